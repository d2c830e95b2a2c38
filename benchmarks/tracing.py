"""Per-request cost of soc2kit's tracing middleware vs opentelemetry-instrumentation-fastapi.

Three variants of the same hello-world JSON route run side by side in one
process and one asyncio loop, interleaved within each repetition in chunks of
``--chunk`` requests (A, B, C, A, B, C, ...) so that machine noise spreads
evenly over them:

``bare``
    FastAPI, a plain ``async def`` route returning a small JSON object.
``soc2kit``
    The same app wrapped in ``soc2kit.tracing.TracingMiddleware`` with a
    provider from ``build_tracer_provider("bench", exporter=InMemorySpanExporter())``
    (a SimpleSpanProcessor: every span is exported synchronously).
``otel``
    The same app after ``FastAPIInstrumentor.instrument_app(app,
    tracer_provider=...)`` with default settings, on its own provider with the
    same processor type (SimpleSpanProcessor) and its own in-memory exporter.

Requests are direct ASGI calls (a fresh ``http`` scope, a ``receive`` that
returns one ``http.request`` message, a ``send`` that keeps the status), as in
``benchmarks/http_overhead.py``. The exporters are emptied after every chunk,
outside the timed region, so memory does not grow.

    python benchmarks/tracing.py --write docs/performance.md
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench_report import write_section
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import ASGIApp, Message, Scope

import soc2kit
from soc2kit.tracing import TracingMiddleware, build_tracer_provider

TARGET = 1 / 3  # soc2kit's added cost at most a third of the instrumentation's
PATH = "/hello"
HOST = b"testserver"


# apps -----------------------------------------------------------------------
def bare_app() -> FastAPI:
    app = FastAPI()

    @app.get(PATH)
    async def hello() -> dict[str, str]:
        return {"message": "hello"}

    return app


# direct ASGI calls ----------------------------------------------------------
@dataclass
class Driver:
    """Sends ``n`` GET requests straight into an ASGI app and counts the statuses."""

    statuses: dict[int, int] = field(default_factory=dict)

    @staticmethod
    def scope() -> Scope:
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", HOST),
                (b"user-agent", b"soc2kit-benchmark"),
                (b"accept", b"application/json"),
            ],
            "client": ("10.0.0.1", 50000),
            "server": ("testserver", 80),
        }

    async def run(self, app: ASGIApp, n: int) -> None:
        request = {"type": "http.request", "body": b"", "more_body": False}
        statuses = self.statuses

        async def receive() -> Message:
            return request

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                statuses[status] = statuses.get(status, 0) + 1

        for _ in range(n):
            await app(self.scope(), receive, send)


# measurement ----------------------------------------------------------------
@dataclass
class Variant:
    key: str
    label: str
    app: ASGIApp
    reset: Callable[[], int] = lambda: 0  # runs outside the timed region; returns spans seen
    seconds: list[float] = field(default_factory=list)
    spans: int = 0

    def us(self, requests: int) -> list[float]:
        return [s * 1e6 / requests for s in self.seconds]


def clearer(exporter: InMemorySpanExporter) -> Callable[[], int]:
    def reset() -> int:
        n = len(exporter.get_finished_spans())
        exporter.clear()
        return n

    return reset


async def measure(
    variants: list[Variant], requests: int, warmup: int, chunk: int, repeats: int
) -> None:
    driver = Driver()
    for v in variants:  # builds middleware stacks, fills caches
        await driver.run(v.app, warmup)
        v.reset()
    gc.collect()
    gc.freeze()
    for rep in range(repeats):
        totals = [0.0] * len(variants)
        done = 0
        while done < requests:
            n = min(chunk, requests - done)
            for i, v in enumerate(variants):
                gc.collect()
                started = time.perf_counter()
                await driver.run(v.app, n)
                totals[i] += time.perf_counter() - started
                v.spans += v.reset()
            done += n
        for v, total in zip(variants, totals, strict=True):
            v.seconds.append(total)
        print(
            f"  repetition {rep + 1}/{repeats}: "
            + ", ".join(
                f"{v.key} {total * 1e6 / requests:.1f} µs"
                for v, total in zip(variants, totals, strict=True)
            ),
            file=sys.stderr,
            flush=True,
        )
    bad = {s: c for s, c in driver.statuses.items() if s != 200}
    if bad:
        raise SystemExit(f"non-200 responses {bad}: the numbers would not be comparable")


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], fmt: str) -> str:
    return f"{format(med(values), fmt)} ({format(min(values), fmt)} to {format(max(values), fmt)})"


@dataclass
class Result:
    table: str
    verdict: list[str]
    ratio: float
    passed: bool


def evaluate(variants: list[Variant], requests: int) -> Result:
    bare, ours, otel = variants
    b, s, o = bare.us(requests), ours.us(requests), otel.us(requests)
    # Paired per repetition: the variants of one repetition ran interleaved.
    added_s = [x - y for x, y in zip(s, b, strict=True)]
    added_o = [x - y for x, y in zip(o, b, strict=True)]
    ratios = [x / y for x, y in zip(added_s, added_o, strict=True) if y > 0]
    ratio = med(ratios) if ratios else float("inf")
    of_medians = (med(s) - med(b)) / (med(o) - med(b)) if med(o) > med(b) else float("inf")
    lines = [
        "| variant | µs/request median (min to max) | added over (1), µs, median (min to max) "
        "| spans exported per request |",
        "|---|---:|---:|---:|",
        f"| {bare.label} | {spread(b, '.1f')} | | {bare.spans / (requests * len(b)):.0f} |",
        f"| {ours.label} | {spread(s, '.1f')} | {spread(added_s, '+.1f')} "
        f"| {ours.spans / (requests * len(s)):.0f} |",
        f"| {otel.label} | {spread(o, '.1f')} | {spread(added_o, '+.1f')} "
        f"| {otel.spans / (requests * len(o)):.0f} |",
    ]
    passed = ratio <= TARGET
    verdict = [
        f"- **added(2) / added(3): {ratio:.3f}** (median of the per-repetition ratios; "
        + (f"{min(ratios):.3f} to {max(ratios):.3f}; " if ratios else "")
        + f"ratio of the medians {of_medians:.3f}). Target at most {TARGET:.3f} (a third): "
        f"**{'PASS' if passed else 'MISS'}**.",
        f"- soc2kit's tracing adds {med(added_s):.1f} µs per request, "
        f"opentelemetry-instrumentation-fastapi adds {med(added_o):.1f} µs "
        f"(medians of the per-repetition differences).",
    ]
    return Result("\n".join(lines), verdict, ratio, passed)


# report ---------------------------------------------------------------------
def load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine(load_before: str, load_after: str) -> list[str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- Machine: {usable} usable cores (nproc){f', {cpu}' if cpu else ''}, "
        f"{platform.platform()}; shared and noisy. Load average (1/5/15 min) "
        f"{load_before} before the run, {load_after} after.",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"FastAPI {version('fastapi')}, Starlette {version('starlette')}, "
        f"soc2kit {soc2kit.__version__}, opentelemetry-api {version('opentelemetry-api')}, "
        f"opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"opentelemetry-instrumentation-fastapi "
        f"{version('opentelemetry-instrumentation-fastapi')}, "
        f"opentelemetry-instrumentation-asgi {version('opentelemetry-instrumentation-asgi')}.",
    ]


def command_line(argv: list[str]) -> str:
    def shown(path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    python = Path(sys.executable)
    interpreter = shown(python) if python.is_relative_to(Path.cwd()) else "python"
    return shlex.join([interpreter, shown(Path(__file__).resolve()), *argv])


def section(result: Result, args: argparse.Namespace, argv: list[str], load_before: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "## Tracing: soc2kit's middleware vs opentelemetry-instrumentation-fastapi",
        "",
        f"Measured {when} with:",
        "",
        "```sh",
        command_line(argv),
        "```",
        "",
        *machine(load_before, load()),
        "",
        "Variants: **(1)** bare FastAPI, a plain `async def` GET route returning a small "
        "JSON object; **(2)** the same app wrapped in "
        '`soc2kit.tracing.TracingMiddleware(app, provider, pseudonym_key=b"k" * 32)`, '
        '`provider = build_tracer_provider("bench", exporter=InMemorySpanExporter())`; '
        "**(3)** the same app after `FastAPIInstrumentor.instrument_app(app, "
        "tracer_provider=provider2)` with default settings, `provider2` a separate "
        "`TracerProvider` with its own `InMemorySpanExporter` behind a `SimpleSpanProcessor` "
        "(the processor `build_tracer_provider` uses for an injected exporter). Direct ASGI "
        "calls, no network, no client library. "
        f"{args.requests:,} requests per variant and repetition, {args.repeats} repetitions, "
        f"the variants interleaved in chunks of {args.chunk:,} requests (A, B, C, A, B, C, "
        f"...), after {args.warmup:,} warm-up requests per variant; the exporters are emptied "
        "after every chunk, outside the timed region. Every response is checked to be a 200.",
        "",
        result.table,
        "",
        *result.verdict,
        "- The instrumentation's default also creates internal `http send` spans for the "
        "response messages (the *spans exported* column); soc2kit creates one SERVER span "
        "per request. Both costs are per request whatever the route does, so a hello-world "
        "route is the worst case for the overhead relative to (1), not for the ratio.",
        "",
    ]
    return "\n".join(out)


# main -----------------------------------------------------------------------
def build_variants() -> tuple[list[Variant], list[TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider("bench", exporter=exporter)
    ours = TracingMiddleware(bare_app(), provider, pseudonym_key=b"k" * 32)

    exporter2 = InMemorySpanExporter()
    provider2 = TracerProvider()
    provider2.add_span_processor(SimpleSpanProcessor(exporter2))
    otel = bare_app()
    FastAPIInstrumentor.instrument_app(otel, tracer_provider=provider2)

    variants = [
        Variant("bare", "(1) bare FastAPI", bare_app()),
        Variant("soc2kit", "(2) + soc2kit `TracingMiddleware`", ours, clearer(exporter)),
        Variant("otel", "(3) + `FastAPIInstrumentor.instrument_app`", otel, clearer(exporter2)),
    ]
    return variants, [provider, provider2]


async def check_spans(variants: list[Variant]) -> None:
    """One request each: the traced variants must actually export a server span."""
    driver = Driver()
    for v in variants[1:]:
        v.reset()
        await driver.run(v.app, 1)
        if v.reset() < 1:
            raise SystemExit(f"{v.key}: no span exported, the comparison would be meaningless")


async def run(args: argparse.Namespace) -> Result:
    variants, providers = build_variants()
    try:
        await check_spans(variants)
        print(f"{args.requests} requests per variant and repetition", file=sys.stderr)
        await measure(variants, args.requests, args.warmup, args.chunk, args.repeats)
    finally:
        for p in providers:
            p.shutdown()
    return evaluate(variants, args.requests)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a quick check")
    parser.add_argument("--requests", type=int, help="per variant and repetition (5000)")
    parser.add_argument("--repeats", type=int, help="repetitions (7)")
    parser.add_argument("--warmup", type=int, help="untimed requests per variant (1000)")
    parser.add_argument("--chunk", type=int, help="requests per variant before the next (500)")
    parser.add_argument("--write", type=Path, help="insert the results into this Markdown file")
    args = parser.parse_args(argv)
    defaults: dict[str, Any] = (
        {"requests": 1000, "repeats": 3, "warmup": 200, "chunk": 250}
        if args.quick
        else {"requests": 5000, "repeats": 7, "warmup": 1000, "chunk": 500}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if min(args.requests, args.repeats, args.chunk) < 1 or args.warmup < 0:
        parser.error("--warmup may be 0, the other counts must be positive")

    load_before = load()
    result = asyncio.run(run(args))
    text = section(result, args, argv, load_before)
    print(text)
    if args.write:
        write_section(args.write, "tracing", text)
        print(f"wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
