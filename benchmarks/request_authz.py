"""Whole request with a valid RS256 token and an RBAC check, side by side in one run.

Variants, all driven by direct ASGI calls on one event loop (no server, no
client library, so the framework and the security layer are what is timed):

1. bare FastAPI: no authentication at all (the floor);
2. the peer stack a team would otherwise assemble: Authlib verifies the bearer
   token in a FastAPI dependency, then pycasbin's Enforcer checks each of the
   token's roles against the same RBAC policy;
3. soc2kit: ``install()`` with its defaults (security headers, host check, rate
   limit, gate, body limit, audit of every request to SQLite) and
   ``require("invoices", "read")``.

The policy has N lines (roles granted resource/action pairs); the caller's
role holds the permission, so every request is allowed (200). Two token
patterns: one token reused by a client (soc2kit's verified-token cache hits;
the peer stack has no cache) and a fresh token on every request (every
variant pays a signature check).

    .venv/bin/python benchmarks/request_authz.py [--quick] [--write docs/performance.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import casbin
import sqlalchemy as sa
from authlib.jose import JsonWebKey, JsonWebToken
from bench_report import write_section
from casbin.model import Model
from fastapi import Depends, FastAPI, HTTPException, Request
from joserfc import jwt as jose_jwt
from joserfc.jwk import RSAKey

import soc2kit
from soc2kit import Principal, require
from soc2kit.db.schema import policy_grants

logging.disable(logging.WARNING)

ISS, AUD = "https://id.bench.test/", "api://bench"
PEER_MODEL = """
[request_definition]
r = sub, obj, act
[policy_definition]
p = sub, obj, act
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = r.sub == p.sub && r.obj == p.obj && r.act == p.act
"""

Scope = dict[str, Any]


def policy_lines(n: int) -> list[tuple[str, str, str]]:
    """N grants over many roles; the caller's role "clerk" holds invoices:read last."""
    lines = [
        (f"role-{i // 4}", f"resource-{i % 97}", ("read", "write", "approve", "list")[i % 4])
        for i in range(n - 1)
    ]
    lines.append(("clerk", "invoices", "read"))
    return lines


def mint(key: RSAKey, sub: str, now: int, jti: str = "t0") -> str:
    claims = {
        "iss": ISS,
        "aud": AUD,
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "roles": ["clerk"],
        "jti": jti,
    }
    return jose_jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])


def bare_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/invoices/{invoice_id}")
    async def read(invoice_id: int) -> dict[str, Any]:
        return {"id": invoice_id}

    return app


def peer_app(jwks: dict[str, Any], lines: list[tuple[str, str, str]]) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    key_set = JsonWebKey.import_key_set(jwks)
    verifier = JsonWebToken(["RS256"])
    options = {
        "iss": {"essential": True, "value": ISS},
        "aud": {"essential": True, "value": AUD},
        "exp": {"essential": True},
        "sub": {"essential": True},
    }
    model = Model()
    model.load_model_from_text(PEER_MODEL)
    enforcer = casbin.Enforcer(model)
    enforcer.add_policies([list(line) for line in lines])

    def principal(resource: str, action: str) -> Callable[[Request], dict[str, Any]]:
        def dependency(request: Request) -> dict[str, Any]:
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer "):
                raise HTTPException(401)
            try:
                claims = verifier.decode(auth[7:], key_set, claims_options=options)
                claims.validate(leeway=30)
            except Exception:
                raise HTTPException(401) from None
            if not any(enforcer.enforce(role, resource, action) for role in claims["roles"]):
                raise HTTPException(403)
            return dict(claims)

        return dependency

    @app.get("/invoices/{invoice_id}")
    async def read(
        invoice_id: int, claims: dict[str, Any] = Depends(principal("invoices", "read"))
    ) -> Any:
        return {"id": invoice_id, "sub": claims["sub"]}

    return app


def soc2kit_app(jwks: dict[str, Any], lines: list[tuple[str, str, str]], tmp: Path) -> FastAPI:
    url = f"sqlite:///{tmp / 'bench.db'}"
    soc2kit.db.upgrade(url)
    engine = soc2kit.db.create_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:  # bulk load: the policy API writes one audited change each
        conn.execute(
            sa.insert(policy_grants),
            [
                {"role": r, "tenant": "*", "resource": res, "action": a, "created_at": now}
                for r, res, a in lines
            ],
        )
    engine.dispose()
    settings = soc2kit.Settings(
        environment="test",
        database_url=url,
        data_dir=tmp / "data",
        oidc_issuer=ISS,
        oidc_audience=AUD,
        jwks=jwks,
        allowed_hosts=["testserver"],
    )
    app = FastAPI(**settings.fastapi_docs_kwargs())
    soc2kit.install(app, settings)

    @app.get("/invoices/{invoice_id}")
    async def read(invoice_id: int, p: Principal = require("invoices", "read")) -> Any:
        return {"id": invoice_id, "sub": p.subject}

    return app


async def drive(app: Any, tokens: list[str], offset: int) -> float:
    """Send len(tokens) requests; returns µs per request. Fails loudly on a non-200."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    start = time.perf_counter()
    for i, token in enumerate(tokens):
        n = offset + i
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/invoices/42",
            "raw_path": b"/invoices/42",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"testserver"), (b"authorization", b"Bearer " + token.encode())],
            # Rotate client addresses so the default per-client rate limit never triggers.
            "client": (f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", 40000),
            "server": ("testserver", 80),
        }
        await app(scope, receive, send)
    elapsed = time.perf_counter() - start
    if any(s != 200 for s in statuses):
        raise SystemExit(f"unexpected statuses: {sorted(set(statuses))}")
    return elapsed / len(tokens) * 1e6


async def start(app: Any) -> asyncio.Event:
    """Run the app's lifespan startup; set the returned event to shut it down."""
    stop = asyncio.Event()
    started = asyncio.Event()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "lifespan.startup"}
        await stop.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"].endswith("failed"):
            raise SystemExit(str(message))
        if message["type"] == "lifespan.startup.complete":
            started.set()

    app._bench_task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    )
    await asyncio.wait_for(started.wait(), 30)
    return stop


async def measure(sizes: list[int], requests: int, repeats: int) -> list[dict[str, Any]]:
    key = RSAKey.generate_key(2048, parameters={"kid": "bench", "alg": "RS256"}, private=True)
    jwks = {"keys": [key.as_dict(private=False)]}
    now = int(time.time())
    results = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for n in sizes:
            lines = policy_lines(n)
            apps = {
                "bare": bare_app(),
                "peer": peer_app(jwks, lines),
                "soc2kit": soc2kit_app(jwks, lines, Path(tmpdir) / f"n{n}"),
            }
            stop = await start(apps["soc2kit"])
            for pattern in ("reused token", "fresh token"):
                reuse = pattern == "reused token"
                samples: dict[str, list[float]] = {k: [] for k in apps}
                offset = 0
                warm = [mint(key, "alice", now)] * 50
                for app in apps.values():
                    await drive(app, warm, offset)
                    offset += len(warm)
                for _ in range(repeats):
                    for name, app in apps.items():  # interleaved: noise hits every variant
                        tokens = (
                            [mint(key, "alice", now)] * requests
                            if reuse
                            else [
                                mint(key, "alice", now, f"t{offset + i}") for i in range(requests)
                            ]
                        )
                        samples[name].append(await drive(app, tokens, offset))
                        offset += requests
                med = {k: statistics.median(v) for k, v in samples.items()}
                results.append(
                    {
                        "lines": n,
                        "pattern": pattern,
                        **{f"{k}_us": med[k] for k in apps},
                        **{f"{k}_min": min(v) for k, v in samples.items()},
                        **{f"{k}_max": max(v) for k, v in samples.items()},
                        "ratio": med["peer"] / med["soc2kit"],
                    }
                )
                print(
                    f"N={n:>6} {pattern:13} bare {med['bare']:8.1f}  peer {med['peer']:9.1f}  "
                    f"soc2kit {med['soc2kit']:8.1f} µs/request  soc2kit/peer throughput "
                    f"{med['peer'] / med['soc2kit']:.2f}x",
                    flush=True,
                )
            stop.set()
            await apps["soc2kit"]._bench_task
    return results


def render(results: list[dict[str, Any]], command: str, requests: int, repeats: int) -> str:
    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    lines = [
        "## Whole request: token verification and an RBAC check",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"- Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"casbin {importlib.metadata.version('casbin')}; "
        f"{requests} requests per variant and repetition, {repeats} repetitions, variants "
        "interleaved; medians (min to max).",
        "- Variants: **bare** FastAPI without authentication; **peer**: Authlib verifies the RS256 "
        "token in a dependency, then pycasbin's `Enforcer.enforce` checks the token's role; "
        "**soc2kit**: `install()` defaults (headers, host check, rate limit, gate, body limit, "
        "SQLite audit record of every request) and `require()`.",
        "- *Reused token*: one client sends the same token (soc2kit's verified-token cache "
        "answers; the peer stack, as usually assembled, verifies every time). *Fresh token*: "
        "a new token per request, so every variant pays a signature check.",
        "",
        "| policy lines | token | bare µs | peer µs | soc2kit µs | soc2kit throughput vs peer |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['lines']:,} | {r['pattern']} | {r['bare_us']:.0f} | "
            f"{r['peer_us']:,.0f} ({r['peer_min']:,.0f} to {r['peer_max']:,.0f}) | "
            f"{r['soc2kit_us']:,.0f} ({r['soc2kit_min']:,.0f} to {r['soc2kit_max']:,.0f}) | "
            f"**{r['ratio']:.2f}x** |"
        )
    passed = [r for r in results if r["ratio"] >= 3]
    failed = [r for r in results if r["ratio"] < 3]
    lines += ["", "Target: soc2kit at least 3x the peer stack's throughput."]
    if failed:
        lines.append(
            "- **MISS** where the ratio is below 3: "
            + ", ".join(
                f"{r['lines']:,} lines / {r['pattern']} ({r['ratio']:.2f}x)" for r in failed
            )
            + "."
        )
    if passed:
        lines.append(
            "- **PASS** where it is 3 or more: "
            + ", ".join(
                f"{r['lines']:,} lines / {r['pattern']} ({r['ratio']:.2f}x)" for r in passed
            )
            + "."
        )
    lines += [
        "- Why: pycasbin evaluates its matcher against every policy line on every call, so the "
        "peer's cost grows with the policy; soc2kit decides from a compiled index. With a tiny "
        "policy the two are close, and soc2kit also pays for its other defaults (headers, rate "
        "limit, gate, audit record) that the peer stack does not have.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    args = parser.parse_args()
    sizes, requests, repeats = ([100, 1000], 200, 3) if args.quick else ([100, 1000, 10000], 400, 5)
    results = asyncio.run(measure(sizes, requests, repeats))
    if args.write:
        command = ".venv/bin/python benchmarks/request_authz.py" + (
            " --quick" if args.quick else ""
        )
        command += f" --write {args.write}"
        write_section(args.write, "request_authz", render(results, command, requests, repeats))
        print(f"wrote {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
