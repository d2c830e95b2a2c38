"""Fixtures of the tracing and metrics tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import soc2kit

Metered = tuple[TestClient, soc2kit.Kit, InMemoryMetricReader]


@pytest.fixture
def make_metered(
    make_settings: Callable[..., soc2kit.Settings],
) -> Iterator[Callable[..., Metered]]:
    """An app with soc2kit installed on a MeterProvider read by an InMemoryMetricReader."""
    opened: list[tuple[TestClient, MeterProvider]] = []

    def factory(routes: Callable[[FastAPI, soc2kit.Kit], None], **overrides: Any) -> Metered:
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        app = FastAPI()
        kit = soc2kit.install(app, make_settings(**overrides), meter_provider=provider)
        routes(app, kit)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append((client, provider))
        return client, kit, reader

    yield factory
    for client, provider in opened:
        client.__exit__(None, None, None)
        provider.shutdown()
