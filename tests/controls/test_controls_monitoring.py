"""The monitoring evidence names the OTLP collector by scheme and host only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI

import soc2kit
from soc2kit.controls.evidence import Inputs, collect_monitoring, collect_routes


def test_otlp_endpoint_credentials_never_reach_the_evidence(
    make_settings: Callable[..., soc2kit.Settings],
) -> None:
    app = FastAPI()
    kit = soc2kit.install(
        app, make_settings(otlp_endpoint="https://svc:t0ken-s3cret@collector.example:4318/v1")
    )
    app.include_router(kit.health_router())
    try:
        inputs = Inputs(app=app, kit=kit, now=datetime.now(UTC))
        item = collect_monitoring(inputs, collect_routes(inputs))
        assert item.facts["otlp_endpoint"] == "https://collector.example:4318"
        assert item.facts["health_routes"] == ["/healthz", "/readyz"]
        assert "t0ken" not in repr(item.to_json()) and "t0ken" not in repr(item.details)
    finally:
        kit.shutdown()
