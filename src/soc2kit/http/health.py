"""Liveness and readiness probes (availability criteria A1.1/A1.2).

``/healthz`` says the process serves requests; ``/readyz`` runs every
registered readiness check and answers 503 naming the ones that fail, so a
load balancer stops routing to a replica that cannot write its audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from soc2kit.authz.dependencies import public

if TYPE_CHECKING:
    from soc2kit.kit import Kit

ReadinessCheck = Callable[[], str | None]
"""Returns None when ready, else a short reason (no secrets)."""


def build_router(kit: Kit) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", dependencies=[public("liveness probe for the orchestrator")])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", dependencies=[public("readiness probe for the load balancer")])
    async def readyz() -> JSONResponse:
        results = await run_in_threadpool(kit.readiness)
        failing = {name: reason for name, reason in results.items() if reason is not None}
        checks = {name: ("ok" if reason is None else "failing") for name, reason in results.items()}
        if failing:
            return JSONResponse(
                {"status": "unavailable", "checks": checks, "failing": failing}, status_code=503
            )
        return JSONResponse({"status": "ok", "checks": checks})

    return router
