"""The auditor's read API over the sealed log: mount it with ``kit.audit_router()``.

Guarded by the ``("audit", "read")`` permission (grant it to an ``auditor`` role)
and deny-by-default like every route. Every call records an ``audit.query``
event naming its filters, stored before the answer leaves (critical): who read
the evidence is evidence too.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from soc2kit.audit.verify import prove
from soc2kit.authn.principal import Principal
from soc2kit.authz.dependencies import require
from soc2kit.db.schema import audit_checkpoints, audit_events
from soc2kit.http.errors import ApiError

if TYPE_CHECKING:
    from soc2kit.kit import Kit

_HEX = re.compile(r"[0-9a-f]{32}")
MAX_PAGE = 500


def build_audit_router(kit: Kit, *, prefix: str = "/audit") -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["audit"])
    reader = require("audit", "read")

    @router.get("/events")
    async def list_events(
        since: datetime | None = None,
        until: datetime | None = None,
        actor_id: Annotated[str | None, Query(max_length=256)] = None,
        resource_type: Annotated[str | None, Query(max_length=100)] = None,
        resource_id: Annotated[str | None, Query(max_length=256)] = None,
        event_type: Annotated[str | None, Query(max_length=100)] = None,
        outcome: Annotated[str | None, Query(max_length=16)] = None,
        request_id: Annotated[str | None, Query(max_length=128)] = None,
        trace_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
        after: Annotated[int, Query(ge=0, description="cursor: the last seq seen")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        principal: Principal = reader,
    ) -> dict[str, Any]:
        filters = {
            k: v
            for k, v in {
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None,
                "actor_id": actor_id,
                "resource_type": resource_type,
                "resource_id": resource_id,
                "event_type": event_type,
                "outcome": outcome,
                "request_id": request_id,
                "trace_id": trace_id,
                "after": after,
                "limit": limit,
            }.items()
            if v is not None
        }
        await kit.audit.arecord(
            "audit.query", action="read", outcome="success", durability="critical", filters=filters
        )
        query = sa.select(audit_events.c.seq, audit_events.c.event).where(
            audit_events.c.seq > after
        )
        for column, value in (
            (audit_events.c.actor_id, actor_id),
            (audit_events.c.resource_type, resource_type),
            (audit_events.c.resource_id, resource_id),
            (audit_events.c.event_type, event_type),
            (audit_events.c.outcome, outcome),
            (audit_events.c.request_id, request_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(audit_events.c.occurred_at >= since)
        if until is not None:
            query = query.where(audit_events.c.occurred_at < until)
        if trace_id is not None and _HEX.fullmatch(trace_id):
            # Not a column: the id sits in the event's canonical JSON (validated hex).
            query = query.where(audit_events.c.event.contains(f'"trace_id":"{trace_id}"'))
        query = query.order_by(audit_events.c.seq).limit(limit)

        def run() -> list[Any]:
            with kit.engine.connect() as conn:
                return list(conn.execute(query))

        rows = await run_in_threadpool(run)
        events = [{"seq": int(r.seq), **json.loads(r.event)} for r in rows]
        return {
            "events": events,
            "next_after": events[-1]["seq"] if len(events) == limit else None,
        }

    @router.get("/events/{event_id}")
    async def one_event(
        event_id: Annotated[str, PathParam(max_length=36)],
        principal: Principal = reader,
    ) -> dict[str, Any]:
        await kit.audit.arecord(
            "audit.query",
            action="read",
            outcome="success",
            durability="critical",
            resource_type="audit_event",
            resource_id=event_id,
        )

        def run() -> dict[str, Any]:
            bundle = prove(kit.engine, event_id)
            sealer = kit.audit.sealer
            bundle["vkey"] = sealer.signer.vkey if sealer is not None else None
            return bundle

        try:
            return await run_in_threadpool(run)
        except LookupError:
            raise ApiError(404, "not_found") from None

    @router.get("/checkpoints/latest")
    async def latest_checkpoint(principal: Principal = reader) -> dict[str, Any]:
        await kit.audit.arecord(
            "audit.query",
            action="read",
            outcome="success",
            durability="critical",
            resource_type="audit_checkpoint",
        )

        def run() -> Any:
            with kit.engine.connect() as conn:
                return conn.execute(
                    sa.select(audit_checkpoints.c.size, audit_checkpoints.c.note)
                    .order_by(audit_checkpoints.c.id.desc())
                    .limit(1)
                ).first()

        row = await run_in_threadpool(run)
        if row is None:
            raise ApiError(404, "not_found")
        sealer = kit.audit.sealer
        return {
            "size": int(row.size),
            "checkpoint": row.note,
            "vkey": sealer.signer.vkey if sealer is not None else None,
        }

    return router
