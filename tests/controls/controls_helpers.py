"""Shared helpers of the ``soc2kit controls`` / ``soc2kit evidence`` tests.

Generations run either in-process (a fresh app per generation: ``collect()``
runs the app's lifespan, once per app object) or through the real CLI in a
subprocess when several generations of "the same code" must be compared.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import regex
from fastapi import FastAPI
from jsonschema import Draft7Validator, ValidationError, validators

import soc2kit
from soc2kit.controls import Report, collect, write

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "data" / "oscal_component_schema.json"

# The 61 criteria of the 2017 TSC, written out here rather than read from the
# package's data file, so a dropped or duplicated criterion in that file fails.
SECURITY = [
    *(f"CC1.{i}" for i in range(1, 6)),
    *(f"CC2.{i}" for i in range(1, 4)),
    *(f"CC3.{i}" for i in range(1, 5)),
    *(f"CC4.{i}" for i in range(1, 3)),
    *(f"CC5.{i}" for i in range(1, 4)),
    *(f"CC6.{i}" for i in range(1, 9)),
    *(f"CC7.{i}" for i in range(1, 6)),
    "CC8.1",
    "CC9.1",
    "CC9.2",
]
OPTIONAL = {
    "availability": ["A1.1", "A1.2", "A1.3"],
    "confidentiality": ["C1.1", "C1.2"],
    "processing-integrity": [f"PI1.{i}" for i in range(1, 6)],
    "privacy": [
        "P1.1",
        "P2.1",
        "P3.1",
        "P3.2",
        "P4.1",
        "P4.2",
        "P4.3",
        "P5.1",
        "P5.2",
        *(f"P6.{i}" for i in range(1, 8)),
        "P7.1",
        "P8.1",
    ],
}
ALL_CRITERIA = SECURITY + [c for ids in OPTIONAL.values() for c in ids]
assert len(ALL_CRITERIA) == 61

STATUS_LABELS = {
    "service-provided": "service-provided",
    "shared": "shared",
    "organization-provided": "organization-provided",
    "out of scope": "out-of-scope",
}
DOCUMENTS = ("controls.md", "controls.html", "component-definition.json", "catalog.json")
EVIDENCE_IDS = (
    "routes",
    "identity",
    "access",
    "http",
    "configuration",
    "encryption",
    "encryption-shredding",
    "audit-capture",
    "audit-integrity",
    "monitoring",
    "schemas",
    "migrations",
    "tests",
    "dependency-scan",
    "inventory",
)


# building and generating ----------------------------------------------------------------


def build_app(
    settings: soc2kit.Settings, declare: Callable[[FastAPI, soc2kit.Kit], None] | None = None
) -> tuple[FastAPI, soc2kit.Kit]:
    """A real app: soc2kit installed, health probes, one protected and one public route."""
    app = FastAPI(**settings.fastapi_docs_kwargs())
    kit = soc2kit.install(app, settings)
    app.include_router(kit.health_router())

    @app.get("/ledger", dependencies=[soc2kit.require("ledger", "read")])
    def ledger() -> dict[str, str]:
        return {}

    @app.get("/", dependencies=[soc2kit.public("service banner")])
    def index() -> dict[str, str]:
        return {}

    if declare is not None:
        declare(app, kit)
    return app, kit


def seed_history(settings: soc2kit.Settings) -> None:
    """Give a database some sealed audit history, as any database in use has.

    On a fresh database the first generation counts no sealed event, and
    controls.md then differs from later ones outside its volatile blocks (a
    defect, shown by test_check_right_after_generation_on_a_fresh_database).
    """
    kit = soc2kit.install(FastAPI(), settings)
    kit.audit.record("ctl.seed", action="seed", outcome="success", actor="system")
    kit.audit.flush()
    kit.shutdown()


def generate(
    app: FastAPI, out: Path, scope: tuple[Any, ...] = (), **kwargs: Any
) -> tuple[Report, dict[str, str]]:
    """collect() then write(), as ``soc2kit controls`` does; the report and the written files."""
    report = collect(app, app_ref="ctl_app:app", scope=scope, **kwargs)
    generated = write(report, out)
    return report, generated.files


def evidence(out: Path, item: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "evidence" / f"{item}.json").read_text("utf-8"))
    return data


def output_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


# reading the documents ------------------------------------------------------------------

_MD_ROW = re.compile(r"^\| ((?:CC|A|C|PI|P)\d+\.\d+) \| (.+?) \| ([a-z -]+?) \| (.*?) \|$", re.M)
_HTML_ROW = re.compile(
    # Out-of-scope criteria have no section, so their id is not a link.
    r'<tr><td>(?:<a href="#[^"]+">)?([A-Z]+[0-9]+\.[0-9]+)(?:</a>)?</td><td>[^<]*</td>'
    r'<td><span class="s-([a-z-]+)">([^<]+)</span></td>'
)


def md_statuses(text: str) -> list[tuple[str, str]]:
    """(criterion, status) of every row of controls.md's criteria table, in order."""
    return [(m[1], STATUS_LABELS[m[3]]) for m in _MD_ROW.finditer(text)]


def html_statuses(text: str) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in _HTML_ROW.finditer(text)]


def md_summary_counts(text: str) -> dict[str, int]:
    section = text.split("## Summary", 1)[1].split("| control | status |", 1)[0]
    counts = {}
    for label, status in STATUS_LABELS.items():
        found = re.search(rf"^\| {re.escape(label)} \| (\d+) \|$", section, re.M)
        assert found, (label, section)
        counts[status] = int(found[1])
    return counts


def md_control_statuses(text: str) -> dict[str, str]:
    section = text.split("| control | status |", 1)[1].split("## Criteria", 1)[0]
    return {
        m[1]: m[2]
        for m in re.finditer(r"^\| (SK-[A-Z]+-\d+) .*? \| ([a-z ,()]+) \|$", section, re.M)
    }


def requirements(out: Path) -> list[dict[str, Any]]:
    doc = json.loads((out / "component-definition.json").read_text("utf-8"))
    implementations = doc["component-definition"]["components"][0].get(
        "control-implementations", []
    )
    return [r for impl in implementations for r in impl["implemented-requirements"]]


def assert_complete(out: Path, scope: tuple[str, ...]) -> dict[str, str]:
    """Every output exists; every criterion appears once, with one status, in md, HTML and
    OSCAL alike; the optional categories not in ``scope`` (and only those) are out of
    scope; the summary counts add up to 61. Returns criterion -> status."""
    for name in (*DOCUMENTS, "manifest.json"):
        assert (out / name).is_file(), name
    assert sorted(p.stem for p in (out / "evidence").glob("*.json")) == sorted(EVIDENCE_IDS)
    md = (out / "controls.md").read_text("utf-8")
    html = (out / "controls.html").read_text("utf-8")
    rows = md_statuses(md)
    assert [c for c, _ in rows] == ALL_CRITERIA
    statuses = dict(rows)
    assert html_statuses(html) == rows
    for criterion, status in rows:
        optional = next((cat for cat, ids in OPTIONAL.items() if criterion in ids), None)
        if optional is not None and optional not in scope:
            assert status == "out-of-scope", (criterion, status)
        else:
            assert status != "out-of-scope", (criterion, status)
    counts = md_summary_counts(md)
    assert sum(counts.values()) == 61
    for status in STATUS_LABELS.values():
        assert counts[status] == sum(1 for s in statuses.values() if s == status), status
    provided = {c for c, s in statuses.items() if s in ("service-provided", "shared")}
    reqs = requirements(out)
    assert sorted(r["control-id"] for r in reqs) == sorted(provided)
    for r in reqs:
        responsibility = [p["value"] for p in r["props"] if p["name"] == "responsibility"]
        assert responsibility == [statuses[r["control-id"]]]
    return statuses


# OSCAL ----------------------------------------------------------------------------------


def _regex_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    # Python's re cannot compile the schema's \p{L} / \p{N} classes; `regex` can.
    if validator.is_type(instance, "string") and regex.search(pattern, instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def oscal_validator() -> Any:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    cls = validators.extend(Draft7Validator, {"pattern": _regex_pattern})
    # The meta-schema's "regex" format would compile \\p{L} with re: check the rest only.
    cls.check_schema(schema, format_checker=None)
    return cls(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def oscal_errors(document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in oscal_validator().iter_errors(document)
    ]


def uuids(node: Any) -> list[str]:
    """Every "uuid" value of a JSON document, in document order."""
    if isinstance(node, dict):
        own = [node["uuid"]] if isinstance(node.get("uuid"), str) else []
        return own + [u for v in node.values() for u in uuids(v)]
    if isinstance(node, list):
        return [u for v in node for u in uuids(v)]
    return []


def assert_oscal(out: Path) -> None:
    """Valid against NIST's schema, control-ids in our catalog, evidence hashes true."""
    doc = json.loads((out / "component-definition.json").read_text("utf-8"))
    assert oscal_errors(doc) == []
    catalog = json.loads((out / "catalog.json").read_text("utf-8"))["catalog"]
    catalog_ids = {c["id"] for g in catalog["groups"] for c in g["controls"]}
    assert sorted(catalog_ids) == sorted(ALL_CRITERIA)
    definition = doc["component-definition"]
    implementation = definition["components"][0]["control-implementations"][0]
    assert implementation["source"] == "catalog.json"
    resources = {r["uuid"]: r for r in definition["back-matter"]["resources"]}
    assert len(resources) == len(EVIDENCE_IDS)
    for req in implementation["implemented-requirements"]:
        assert req["control-id"] in catalog_ids
        assert req["links"], req["control-id"]
        for link in req["links"]:
            assert link["href"].startswith("#") and link["href"][1:] in resources
    for resource in resources.values():
        (rlink,) = resource["rlinks"]
        (digest,) = rlink["hashes"]
        assert digest["algorithm"] == "SHA-256"
        assert digest["value"] == hashlib.sha256((out / rlink["href"]).read_bytes()).hexdigest()


# claims and self-containment ------------------------------------------------------------

CLAIM_WORDS = re.compile(r"\b(compliant|certified)\b", re.IGNORECASE)


def assert_no_claims(out: Path) -> None:
    for name, data in output_files(out).items():
        found = CLAIM_WORDS.findall(data.decode("utf-8"))
        assert not found, (name, found)


_ATTRIBUTE = re.compile(
    r"""\b(?:src|href|action|formaction|srcset|poster|data|background)\s*=\s*["']?([^"'\s>]*)""",
    re.IGNORECASE,
)
_LOADING_TAG = re.compile(
    r"<\s*(?:script|link|img|iframe|frame|object|embed|base|audio|video)\b", re.I
)


def assert_self_contained(html: str) -> None:
    """No resource from anywhere: no script, no external link or import, no url()."""
    assert html.startswith("<!DOCTYPE html>")
    assert "default-src 'none'" in html  # and the page's own CSP forbids loading anything
    assert not _LOADING_TAG.findall(html), _LOADING_TAG.findall(html)
    for target in _ATTRIBUTE.findall(html):
        assert target.startswith("#"), target  # in-page anchors only
    lowered = html.lower()
    assert "@import" not in lowered
    assert "url(" not in lowered


# secrets --------------------------------------------------------------------------------


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def secret_forms(value: str | bytes) -> set[str]:
    """The ways a secret could leak: as given, base64 (both alphabets, padded or not), hex."""
    raw = value.encode() if isinstance(value, str) else value
    forms = {raw.hex(), base64.b64encode(raw).decode(), b64url(raw)}
    forms |= {f.rstrip("=") for f in forms}
    if isinstance(value, str):
        forms.add(value)
    return {f for f in forms if len(f) >= 16}


# subprocesses ---------------------------------------------------------------------------


def cli_env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    """A clean environment for ``python -m soc2kit``: nothing from the caller's SOC2KIT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC2KIT_")}
    env.update(
        SOC2KIT_ENVIRONMENT="test",
        SOC2KIT_DATABASE_URL=database_url,
        SOC2KIT_DATA_DIR=str(tmp_path / ".soc2kit"),
        # PostgreSQL: the policy listener is stopped at shut-down within one poll.
        SOC2KIT_POLICY_POLL_SECONDS="0.2",
        PYTHONDONTWRITEBYTECODE="1",
        COLUMNS="200",
    )
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    paths = [str(cwd), str(ROOT)]
    child = {**env, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run(
        [sys.executable, "-m", "soc2kit", *args],
        cwd=cwd,
        env=child,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_python(
    source: str, *, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    child = {**env, "PYTHONPATH": os.pathsep.join([str(cwd), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-c", source],
        cwd=cwd,
        env=child,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def shown(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
