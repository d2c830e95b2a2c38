"""SQL spans: children of the request's span, never SQL text, values or plaintext."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import soc2kit
from soc2kit import public
from soc2kit.crypto import Encrypted
from soc2kit.tracing import build_tracer_provider, instrument_engine

ALLOWED = {"db.system.name", "db.operation.name", "db.collection.name", "error.type"}
ROW_ID = 48151623
PLAINTEXT = "patient-diagnosis-plaintext"
LITERAL = "literal-in-sql@example.com"


class Base(DeclarativeBase):
    pass


class Chart(Base):
    __tablename__ = "sql_span_charts"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), default="acme")
    note: Mapped[str] = mapped_column(Encrypted(sa.String(200)))
    owner: Mapped[str] = mapped_column(sa.String(200), default="")


def text_of(span: ReadableSpan) -> str:
    parts = [span.name, str(span.status.description)]
    parts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
    parts += [e.name + repr(e.attributes) for e in span.events]
    return "\n".join(parts)


@pytest.fixture
def traced(
    make_client: Callable[..., tuple[TestClient, soc2kit.Kit]],
) -> tuple[TestClient, soc2kit.Kit, InMemorySpanExporter]:
    def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
        Base.metadata.create_all(kit.engine)

        @app.get("/charts/{chart_id}", dependencies=[public("test")])
        def chart(chart_id: int) -> dict[str, Any]:
            with kit.sessions() as s:
                row = s.get(Chart, chart_id)
                assert row is not None
                count = s.execute(
                    sa.text(f"SELECT count(*) FROM sql_span_charts WHERE owner = '{LITERAL}'")
                ).scalar_one()
                return {"note": row.note, "count": count}

        @app.get("/broken", dependencies=[public("test")])
        def broken() -> None:
            with kit.engine.connect() as conn:
                conn.execute(sa.text(f"SELECT * FROM no_such_table WHERE x = '{LITERAL}'"))

    client, kit = make_client(routes, tracing_enabled=True, tracing_pseudonym_key="p" * 32)
    with kit.sessions() as s:
        s.add(Chart(id=ROW_ID, note=PLAINTEXT, owner=LITERAL))
        s.commit()
    assert kit.tracer_provider is not None
    exporter = InMemorySpanExporter()
    kit.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return client, kit, exporter


def test_db_spans_are_children_of_the_server_span_without_sql_or_values(
    traced: tuple[TestClient, soc2kit.Kit, InMemorySpanExporter],
) -> None:
    client, _, exporter = traced
    response = client.get(f"/charts/{ROW_ID}")
    assert response.json() == {"note": PLAINTEXT, "count": 1}
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    db = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert {(s.name, s.attributes.get("db.collection.name")) for s in db if s.attributes} >= {
        ("SELECT sql_span_charts", "sql_span_charts"),  # the ORM get: table from the statement
        ("SELECT", None),  # text(): operation only, nothing parsed out of the SQL
    }
    for span in db:
        assert span.parent is not None and span.parent.span_id == server.context.span_id
        assert span.context.trace_id == server.context.trace_id
        assert span.attributes is not None and set(span.attributes) <= ALLOWED
        assert span.attributes["db.system.name"] == "sqlite"
        blob = text_of(span)
        for leaked in (str(ROW_ID), PLAINTEXT, LITERAL, "WHERE", "?"):
            assert leaked not in blob, (leaked, blob)


def test_failed_statement_records_the_error_type_only(
    traced: tuple[TestClient, soc2kit.Kit, InMemorySpanExporter],
) -> None:
    client, _, exporter = traced
    assert client.get("/broken").status_code == 500
    (failed,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "OperationalError"
    blob = text_of(failed)
    assert LITERAL not in blob and "no_such_table" not in blob


def test_no_spans_outside_a_trace(
    traced: tuple[TestClient, soc2kit.Kit, InMemorySpanExporter],
) -> None:
    _, kit, exporter = traced
    kit.audit.record("thing.changed", action="update", outcome="success")
    kit.audit.flush()  # writer thread, sealer, checkpoint: all SQL, none traced
    with kit.sessions() as s:
        assert s.get(Chart, ROW_ID) is not None
    assert exporter.get_finished_spans() == ()


def test_attached_async_engine_and_instrumenting_twice(tmp_path: Path) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    exporter = InMemorySpanExporter()
    provider = build_tracer_provider("svc", exporter=exporter)
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    instrument_engine(engine, provider)
    instrument_engine(engine, provider)  # a second call adds no second listener
    tracer = provider.get_tracer("test")

    async def scenario() -> None:
        with tracer.start_as_current_span("parent"):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        await engine.dispose()

    asyncio.run(scenario())
    spans = exporter.get_finished_spans()
    (parent,) = [s for s in spans if s.name == "parent"]
    assert [(s.name, s.parent.span_id if s.parent else None) for s in spans if s is not parent] == [
        ("SELECT", parent.context.span_id)
    ]
    provider.shutdown()


def test_no_sql_spans_when_tracing_is_off(
    make_client: Callable[..., tuple[TestClient, soc2kit.Kit]],
) -> None:
    _, kit = make_client()
    assert kit.tracer_provider is None
    assert getattr(kit.engine, "_soc2kit_engine_tracer", None) is None  # no listeners at all
