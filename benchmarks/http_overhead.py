"""In-process HTTP overhead of ``soc2kit.install()``.

Three variants of the same hello-world JSON route run side by side in one
process and one asyncio loop, interleaved within each repetition in chunks of
``--chunk`` requests (A, B, C, A, B, C, ...) so that machine noise spreads
evenly over them:

``bare``
    FastAPI without soc2kit, a plain route.
``soc2kit, no audit write``
    ``install()`` with the default HTTP settings; the route is declared
    ``soc2kit.public(...)``. Every request still builds, sanitises and
    serialises its audit event, but the sink's ``submit()`` does nothing
    (a sink defined here, swapped in for the benchmark only).
``soc2kit + SQLite audit``
    ``install()`` with the defaults and the real SQLite audit sink. Events are
    written by the sink's background thread; every chunk ends with
    ``kit.audit.flush()`` inside the timed region, so the write is counted.

Requests are direct ASGI calls (a fresh ``http`` scope, a ``receive`` that
returns one ``http.request`` message, a ``send`` that keeps the status), so
the client's own cost does not dominate. ``--httpx-requests`` adds a series
through ``httpx.ASGITransport`` for reference.

Settings deviate from the defaults only where a benchmark must: environment
``test`` (SQLite migrations run automatically), a temporary database and data
directory. The rate limit keeps its default (100/minute, moving window,
in-memory storage); to stay under it, requests come from ``--clients`` distinct
client addresses in rotation, as on a server with many callers. ``--clients 1
--rate-limit 1000000/minute`` measures one heavy client instead.

    python benchmarks/http_overhead.py --write docs/performance.md
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import os
import platform
import re
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import soc2kit
from soc2kit.audit import AuditEvent, AuditTrail, SqlAuditSink

START = "<!-- http_overhead:start -->"
END = "<!-- http_overhead:end -->"
TARGET = 0.10  # the HTTP defaults may cost at most 10% of bare throughput
PATH = "/hello"
HOST = b"testserver"  # in the default allowed_hosts


class NullSink(SqlAuditSink):
    """The SQL sink with the write taken out: events are accepted and dropped."""

    def submit(self, event: AuditEvent, payload: str) -> None:
        return None

    def try_submit(self, event: AuditEvent, payload: str) -> bool:
        return True


class NoAuditTrail:
    """Stands in for ``kit.audit`` when the breakdown leaves out the audit event."""

    def record(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def arecord(self, *args: Any, **kwargs: Any) -> None:
        return None

    def flush(self, timeout: float = 10.0) -> None:
        return None

    def health(self) -> str | None:
        return None

    def close(self, timeout: float = 10.0) -> None:
        return None


# apps -----------------------------------------------------------------------
def bare_app(*, public: bool = False) -> FastAPI:
    """The baseline; ``public`` adds the ``soc2kit.public()`` dependency without install()."""
    app = FastAPI()
    dependencies = [soc2kit.public("benchmark")] if public else []

    @app.get(PATH, dependencies=dependencies)
    async def hello() -> dict[str, str]:
        return {"message": "hello"}

    return app


def soc2kit_app(
    workdir: Path,
    name: str,
    rate_limit: str | None,
    *,
    audit: str = "sqlite",
    keep: frozenset[str] | None = None,
) -> tuple[FastAPI, soc2kit.Kit]:
    """The same route after ``install()``.

    ``audit``: "sqlite" (the real sink), "null" (events built, not stored) or
    "off" (no event at all). ``keep``: names of the middleware classes to keep
    (None keeps everything ``install()`` added); for the breakdown only.
    """
    app = bare_app(public=True)
    data_dir = workdir / name
    overrides: dict[str, Any] = {} if rate_limit is None else {"rate_limit": rate_limit}
    settings = soc2kit.Settings(
        _env_file=None,  # ignore a developer's .env
        environment="test",
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'app.db'}",
        **overrides,
    )
    kit = soc2kit.install(app, settings)
    if audit == "null":
        kit.audit = AuditTrail(settings, NullSink(kit.engine))
    elif audit == "off":
        kit.audit = NoAuditTrail()  # type: ignore[assignment]
    if keep is not None:
        app.user_middleware = [
            m for m in app.user_middleware if getattr(m.cls, "__name__", "") in keep
        ]
    return app, kit


def middleware_names(app: FastAPI) -> list[str]:
    """Names of the user middleware, outermost first."""
    return [getattr(m.cls, "__name__", "") for m in app.user_middleware]


# direct ASGI calls ----------------------------------------------------------
def client_addresses(count: int) -> list[tuple[str, int]]:
    base = int(ipaddress.IPv4Address("10.0.0.1"))
    return [(str(ipaddress.IPv4Address(base + i)), 50000 + i % 10000) for i in range(count)]


@dataclass
class Driver:
    """Sends ``n`` GET requests straight into an ASGI app and counts the statuses."""

    clients: list[tuple[str, int]]
    statuses: dict[int, int] = field(default_factory=dict)
    _next: int = 0

    def scope(self) -> Scope:
        client = self.clients[self._next % len(self.clients)]
        self._next += 1
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
            "client": client,
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


# httpx reference series -----------------------------------------------------
class RotateClient:
    """Gives each request the next client address (``ASGITransport`` has one fixed)."""

    def __init__(self, app: ASGIApp, clients: list[tuple[str, int]]) -> None:
        self.app = app
        self.clients = clients
        self.i = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["client"] = self.clients[self.i % len(self.clients)]
            self.i += 1
        await self.app(scope, receive, send)


@dataclass
class HttpxDriver:
    """Sends ``n`` GET requests through the ``httpx.AsyncClient`` bound to each app."""

    clients: dict[int, Any] = field(default_factory=dict)  # id(app) -> httpx.AsyncClient
    statuses: dict[int, int] = field(default_factory=dict)

    async def run(self, app: ASGIApp, n: int) -> None:
        client = self.clients[id(app)]
        statuses = self.statuses
        for _ in range(n):
            status = (await client.get(PATH)).status_code
            statuses[status] = statuses.get(status, 0) + 1


# measurement ----------------------------------------------------------------
@dataclass
class Variant:
    key: str
    label: str
    app: FastAPI
    after: Callable[[], None] = lambda: None  # runs inside the timed region
    seconds: list[float] = field(default_factory=list)

    def us(self, requests: int) -> list[float]:
        return [s * 1e6 / requests for s in self.seconds]


@dataclass
class Series:
    name: str
    requests: int
    warmup: int
    chunk: int
    variants: list[Variant]


async def measure(series: Series, driver: Any, repeats: int) -> None:
    print(f"{series.name}: {series.requests} requests per variant", file=sys.stderr)
    for variant in series.variants:  # builds middleware stacks, fills caches
        await driver.run(variant.app, series.warmup)
        variant.after()
    gc.collect()
    gc.freeze()  # what exists now is never garbage: keeps the collections below short
    for rep in range(repeats):
        # Round-robin in chunks, so that a burst of load from elsewhere on the
        # machine hits every variant of this repetition about equally.
        totals = [0.0] * len(series.variants)
        done = 0
        while done < series.requests:
            n = min(series.chunk, series.requests - done)
            for i, variant in enumerate(series.variants):
                gc.collect()
                started = time.perf_counter()
                await driver.run(variant.app, n)
                variant.after()  # e.g. the audit flush: its time counts
                totals[i] += time.perf_counter() - started
            done += n
        for variant, total in zip(series.variants, totals, strict=True):
            variant.seconds.append(total)
        print(
            f"  repetition {rep + 1}/{repeats}: "
            + ", ".join(
                f"{v.key} {series.requests / v.seconds[-1]:,.0f}/s" for v in series.variants
            ),
            file=sys.stderr,
        )
    bad = {s: c for s, c in driver.statuses.items() if s != 200}
    if bad:
        raise SystemExit(f"non-200 responses {bad}: the numbers would not be comparable")


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], fmt: str) -> str:
    return f"{format(med(values), fmt)} ({format(min(values), fmt)} to {format(max(values), fmt)})"


def comparison_table(series: Series) -> str:
    bare = series.variants[0]
    lines = [
        "| variant | req/s median | req/s min | req/s max | µs/request median (min to max) "
        "| throughput vs bare, median (min to max) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for v in series.variants:
        rps = [series.requests / s for s in v.seconds]
        ratio = [b / s for b, s in zip(bare.seconds, v.seconds, strict=True)]
        lines.append(
            f"| {v.label} | {med(rps):,.0f} | {min(rps):,.0f} | {max(rps):,.0f} "
            f"| {spread(v.us(series.requests), '.1f')} | {spread(ratio, '.1%')} |"
        )
    return "\n".join(lines)


def verdict(series: Series) -> list[str]:
    bare, http, audited = series.variants
    n = series.requests
    # Paired per repetition: the variants of one repetition ran back to back.
    loss = [1 - b / h for b, h in zip(bare.seconds, http.seconds, strict=True)]
    http_us = [h - b for h, b in zip(http.us(n), bare.us(n), strict=True)]
    write_us = [a - h for a, h in zip(audited.us(n), http.us(n), strict=True)]
    total = [1 - b / a for b, a in zip(bare.seconds, audited.seconds, strict=True)]
    passed = med(loss) <= TARGET
    return [
        f"- **HTTP defaults without the audit write, (2) vs (1):** throughput lower by "
        f"**{med(loss):.1%}** (median of the per-repetition ratios; {min(loss):.1%} to "
        f"{max(loss):.1%}), {spread(http_us, '.1f')} µs more per request. "
        f"Target at most {TARGET:.0%}: **{'PASS' if passed else 'MISS'}**. (The cost is "
        "per request, whatever the route does, so a hello-world route is the worst case for "
        "this ratio.)",
        f"- **Audit write, (3) minus (2):** **{med(write_us):.1f} µs per request** "
        f"({min(write_us):.1f} to {max(write_us):.1f}; SQLite sink, background writer thread, "
        "flush counted).",
        f"- Everything, (3) vs (1): throughput lower by {spread(total, '.1%')}.",
    ]


def breakdown_table(series: Series) -> str:
    n = series.requests
    medians = [med(v.us(n)) for v in series.variants]
    overhead = medians[-1] - medians[0]
    lines = [
        "| step | µs/request, median (min to max) | added, µs | share of the overhead |",
        "|---|---:|---:|---:|",
    ]
    for i, v in enumerate(series.variants):
        added = f"{medians[i] - medians[i - 1]:+.1f}" if i else ""
        share = f"{(medians[i] - medians[i - 1]) / overhead:.0%}".replace("-0%", "0%") if i else ""
        lines.append(f"| {v.label} | {spread(v.us(n), '.1f')} | {added} | {share} |")
    return "\n".join(lines)


# report ---------------------------------------------------------------------
def load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def revision() -> str:
    """The commit measured, and whether the working tree differed from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"commit {head}" + (" with uncommitted changes in src/" if dirty else "")


def machine(load_before: str, load_after: str, measured: str) -> list[str]:
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
        f"{platform.system()} {platform.release()}; shared and noisy. Load average "
        f"(1/5/15 min) {load_before} before the run, {load_after} after.",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"FastAPI {version('fastapi')}, Starlette {version('starlette')}, "
        f"soc2kit {soc2kit.__version__}{f' ({measured})' if measured else ''}, "
        f"SQLAlchemy {version('sqlalchemy')}, "
        f"limits {version('limits')}, SQLite {sqlite3.sqlite_version}, "
        f"httpx {version('httpx')}.",
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


def section(
    compare: list[Series], breakdown: Series | None, args: argparse.Namespace, argv: list[str]
) -> str:
    clients = (
        f"{args.clients:,} client addresses in rotation"
        if args.clients > 1
        else "a single client address"
    )
    rate = (
        f"`{args.rate_limit}` (**not the default**, set with `--rate-limit`)"
        if args.rate_limit
        else "the default, `100/minute` per client (moving window, in-memory storage)"
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        START,
        "## HTTP overhead of `install()`",
        "",
        f"Measured {when} with:",
        "",
        "```sh",
        command_line(argv),
        "```",
        "",
        *machine(args.load_before, load(), args.revision),
        "",
        "Variants: **(1)** bare FastAPI, a plain `async def` route returning a small JSON "
        "object; **(2)** the same app after `soc2kit.install()` with the default HTTP "
        "settings, the route declared `soc2kit.public(...)`, and an audit sink whose "
        "`submit()` does nothing (each request still builds, sanitises and serialises its "
        "audit event); **(3)** the same with the real SQLite audit sink, "
        "`kit.audit.flush()` inside the timed region after every chunk of requests.",
        "",
    ]
    for s in compare:
        out += [
            f"### {s.name}",
            "",
            f"{s.requests:,} requests per variant and repetition, {args.repeats} repetitions, "
            f"the variants interleaved in chunks of {s.chunk:,} requests (A, B, C, A, B, C, "
            f"...), after {s.warmup:,} warm-up requests per variant.",
            "",
            comparison_table(s),
            "",
            *verdict(s),
            "",
        ]
    if breakdown is not None:
        out += [
            "### Where the time goes",
            "",
            "The same route built up one layer at a time (direct ASGI calls, "
            f"{breakdown.requests:,} requests per step and repetition, {args.repeats} "
            f"repetitions, interleaved in chunks of {breakdown.chunk:,}). Each step adds one "
            "piece to the previous one; "
            "*added* is the difference between consecutive medians, so steps of a few µs are "
            "within the noise. The last step is variant (2) again.",
            "",
            breakdown_table(breakdown),
            "",
        ]
    out += [
        'Settings differ from the defaults only in `environment="test"` and a temporary '
        f"`database_url` and `data_dir`. Rate limit: {rate}; requests come from {clients}, "
        "so no client reaches its limit (every response is checked to be a 200); with "
        "that many addresses, the audit trail's small cache of pseudonymised client "
        "addresses does not help, so every event pays for the truncation "
        "(`--clients 4000` shows the cached case). "
        "One client with a high limit would distort the comparison: the in-memory moving "
        "window keeps one entry per request in the window, and its cost per request grows "
        "with them (`--clients 1 --rate-limit 1000000/minute` shows it). "
        "The `soc2kit.audit` logger stays at its default level (WARNING), so events are not "
        "also written as log lines; enabling INFO logging adds that cost.",
        END,
    ]
    return "\n".join(out)


INTRO = """# Performance

Numbers here come from the scripts in `benchmarks/`, run on a small shared
machine (2 cores, noisy neighbours). Absolute requests per second say little
about your hardware: compare the ratios between variants measured in the same
run, and read the medians rather than the best runs. To reproduce, run the
command shown with each section (`make bench` runs the HTTP one).
"""


def write_doc(path: Path, text: str) -> None:
    if path.exists():
        doc = path.read_text()
        pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
        if pattern.search(doc):
            doc = pattern.sub(lambda _: text, doc, count=1)
        else:
            doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = INTRO + "\n" + text + "\n"
    path.write_text(doc)


# main -----------------------------------------------------------------------
async def run(args: argparse.Namespace) -> tuple[list[Series], Series | None]:
    clients = client_addresses(args.clients)
    compare: list[Series] = []
    breakdown: Series | None = None
    with tempfile.TemporaryDirectory(prefix="soc2kit-bench-") as tmp:
        workdir = Path(tmp)
        bare = bare_app()
        http_app, _ = soc2kit_app(workdir, "null", args.rate_limit, audit="null")
        audit_app, audit_kit = soc2kit_app(workdir, "sqlite", args.rate_limit)

        def flush() -> None:
            audit_kit.audit.flush(timeout=300)

        def variants() -> list[Variant]:
            return [
                Variant("bare", "(1) bare FastAPI", bare),
                Variant("http", "(2) soc2kit, no audit write", http_app),
                Variant("audit", "(3) soc2kit + SQLite audit", audit_app, flush),
            ]

        async with AsyncExitStack() as stack:
            steps = breakdown_steps(workdir, args.rate_limit, http_app) if args.breakdown else []
            apps = {id(a): a for a in [bare, http_app, audit_app, *(v.app for v in steps)]}
            for app in apps.values():  # start-up and shut-down, as under a server
                await stack.enter_async_context(app.router.lifespan_context(app))

            series = Series("Direct ASGI calls", args.requests, args.warmup, args.chunk, variants())
            await measure(series, Driver(clients), args.repeats)
            compare.append(series)

            if args.breakdown:
                breakdown = Series("Breakdown", args.requests, args.warmup, args.chunk, steps)
                await measure(breakdown, Driver(clients), args.repeats)

            if args.httpx_requests:
                series = Series(
                    "Through httpx.ASGITransport (reference)",
                    args.httpx_requests,
                    args.warmup // 5,
                    max(1, args.chunk // 5),
                    variants(),
                )
                await measure_httpx(series, clients, args.repeats)
                compare.append(series)
    return compare, breakdown


def breakdown_steps(workdir: Path, rate_limit: str | None, full: FastAPI) -> list[Variant]:
    """bare, + public(), then install()'s middleware added one at a time (outermost
    first), then the audit event: each step differs from the one before in one piece."""
    steps = [
        Variant("b0", "bare FastAPI", bare_app()),
        Variant("b1", "+ `soc2kit.public()` dependency on the route", bare_app(public=True)),
    ]
    names = middleware_names(full)
    for i in range(1, len(names) + 1):
        app, _ = soc2kit_app(
            workdir, f"b{i + 1}", rate_limit, audit="off", keep=frozenset(names[:i])
        )
        label = f"+ {names[i - 1]}"
        if i == 1:
            label = f"+ `install()`: error handlers, {names[0]} (no audit event)"
        steps.append(Variant(f"b{i + 1}", label, app))
    steps.append(
        Variant(f"b{len(names) + 2}", "+ audit event built and serialised (= variant 2)", full)
    )
    return steps


async def measure_httpx(series: Series, clients: list[tuple[str, int]], repeats: int) -> None:
    import httpx

    driver = HttpxDriver()
    async with AsyncExitStack() as stack:
        for v in series.variants:
            transport = httpx.ASGITransport(app=RotateClient(v.app, clients))
            driver.clients[id(v.app)] = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://testserver")
            )
        await measure(series, driver, repeats)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="per variant and repetition")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1000, help="untimed requests per variant")
    parser.add_argument(
        "--chunk",
        type=int,
        default=500,
        help="requests per variant before moving to the next (httpx series: a fifth)",
    )
    parser.add_argument(
        "--httpx-requests",
        type=int,
        default=1000,
        help="per variant and repetition through httpx.ASGITransport; 0 skips that series",
    )
    parser.add_argument(
        "--breakdown",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the route built up one soc2kit layer at a time",
    )
    parser.add_argument(
        "--clients", type=int, default=16384, help="distinct client addresses, used in rotation"
    )
    parser.add_argument(
        "--rate-limit", default=None, help="override the rate limit (default: keep the default)"
    )
    parser.add_argument("--write", type=Path, help="insert the results into this Markdown file")
    args = parser.parse_args(argv)
    if (
        min(args.requests, args.repeats, args.clients) < 1
        or min(args.warmup, args.httpx_requests) < 0
    ):
        parser.error("--warmup and --httpx-requests may be 0, the other counts must be positive")

    args.load_before = load()
    args.revision = revision()  # soc2kit is imported already: this is the code measured
    compare, breakdown = asyncio.run(run(args))
    text = section(compare, breakdown, args, argv)
    print(text)
    if args.write:
        write_doc(args.write, text)
        print(f"wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
