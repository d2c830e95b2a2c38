"""Collect evidence from an app, write the documents, and check committed ones.

``--check`` is the ``makemigrations --check`` pattern: regenerate into a
temporary folder and compare with what is committed, ignoring only what
changes with the clock (the volatile blocks, ``last-modified``, evidence
hashes and ``observed`` values). A hand edit anywhere is caught as well,
because the committed manifest pins every committed file's SHA-256.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from soc2kit._version import __version__
from soc2kit.controls.catalog import OPTIONAL_CATEGORIES, Category
from soc2kit.controls.evidence import EvidenceItem, Inputs, collect_all, git_commit
from soc2kit.controls.model import Report, build_report
from soc2kit.controls.oscal import CATALOG_FILE, catalog, component_definition
from soc2kit.controls.render import VOLATILE_END, VOLATILE_START, render_html, render_markdown
from soc2kit.errors import ConfigurationError

DOCUMENTS = ("controls.md", "controls.html", "component-definition.json", CATALOG_FILE)
MANIFEST = "manifest.json"


@dataclass(slots=True)
class Generated:
    report: Report
    files: dict[str, str]
    """Relative path -> SHA-256 of every file written."""


def parse_scope(values: Sequence[str]) -> tuple[Category, ...]:
    """Optional categories by name; ``security`` is always in scope and may be listed."""
    chosen: list[Category] = []
    for raw in values:
        for name in (v.strip().lower().replace("_", "-") for v in raw.split(",")):
            if not name or name == "security":
                continue
            if name == "processing integrity":
                name = "processing-integrity"
            if name not in OPTIONAL_CATEGORIES:
                raise ConfigurationError(
                    f"unknown trust category {name!r} (one of security, "
                    f"{', '.join(OPTIONAL_CATEGORIES)})"
                )
            if name not in chosen:
                chosen.append(name)
    return tuple(c for c in OPTIONAL_CATEGORIES if c in chosen)


def project_config(start: Path | None = None) -> dict[str, Any]:
    """The ``[tool.soc2kit]`` table of ./pyproject.toml, or {} when there is none."""
    path = (start or Path.cwd()) / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("soc2kit", {})
    return table if isinstance(table, dict) else {}


def collect(
    app: Any,
    *,
    app_ref: str,
    scope: tuple[Category, ...],
    junit: Path | None = None,
    pip_audit: Path | None = None,
    period_days: int = 90,
    now: datetime | None = None,
) -> Report:
    """Run the app's lifespan (start-up checks included), gather every evidence item."""
    kit = getattr(getattr(app, "state", None), "soc2kit", None)
    if kit is None:
        raise ConfigurationError(f"{app_ref} does not call soc2kit.install()")
    for path in (junit, pip_audit):
        if path is not None and not path.is_file():
            raise ConfigurationError(f"{path} does not exist")
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    inputs = Inputs(
        app=app, kit=kit, now=moment, junit=junit, pip_audit=pip_audit, period_days=period_days
    )

    async def run() -> list[EvidenceItem]:
        async with app.router.lifespan_context(app):
            return await collect_all(inputs)

    items = anyio.run(run)
    return build_report(
        items,
        scope=scope,
        service=kit.settings.service_name,
        environment=kit.settings.environment,
        app_ref=app_ref,
        generated=moment.isoformat(),
        commit=git_commit(),
        version=__version__,
    )


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write(report: Report, out: Path) -> Generated:
    """Write every document, evidence file and the manifest into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    evidence_dir = out / "evidence"
    evidence_dir.mkdir(exist_ok=True)
    keep = {f"{item.id}.json" for item in report.evidence}
    for stale in evidence_dir.glob("*.json"):
        if stale.name not in keep:
            stale.unlink()
    files: dict[str, str] = {}

    def put(relative: str, text: str) -> None:
        (out / relative).write_text(text, encoding="utf-8")
        files[relative] = _sha256(text)

    for item in report.evidence:
        put(f"evidence/{item.id}.json", _dump(item.to_json()))
    put("controls.md", render_markdown(report))
    put("controls.html", render_html(report))
    put(CATALOG_FILE, _dump(catalog(report)))
    put("component-definition.json", _dump(component_definition(report, dict(files))))
    manifest = {
        "generator": f"soc2kit {report.version}",
        "generated": report.generated,
        "app": report.app_ref,
        "commit": report.commit,
        "environment": report.environment,
        "evidence": [
            {
                "id": item.id,
                "file": f"evidence/{item.id}.json",
                "collected": item.collected,
                "commit": report.commit,
                "command": item.source,
                "result": item.result,
                "sha256": files[f"evidence/{item.id}.json"],
            }
            for item in report.evidence
        ],
        "files": dict(sorted(files.items())),
    }
    (out / MANIFEST).write_text(_dump(manifest), encoding="utf-8")
    return Generated(report, files)


# --check ---------------------------------------------------------------------------------

_VOLATILE_BLOCK = re.compile(
    re.escape(VOLATILE_START) + r"\n.*?\n" + re.escape(VOLATILE_END) + r"\n?", re.DOTALL
)


def _strip_volatile(text: str) -> str:
    return _VOLATILE_BLOCK.sub("", text)


def _normalize_json(name: str, text: str) -> str:
    data = json.loads(text)
    if name.startswith("evidence/"):
        data.pop("observed", None)
        data.pop("collected", None)
        return _dump(data)

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: scrub(v) for k, v in node.items() if k not in ("last-modified", "hashes")}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return _dump(scrub(data))


def _normalized(name: str, text: str) -> str:
    if name.endswith(".json"):
        try:
            return _normalize_json(name, text)
        except ValueError:
            return text
    return _strip_volatile(text)


def compare(committed: Path, fresh: Path, *, context: int = 2, limit: int = 40) -> list[str]:
    """Differences in substance between two output folders (empty when up to date)."""
    problems: list[str] = []
    manifest_path = committed / MANIFEST
    pinned: dict[str, str] = {}
    if manifest_path.is_file():
        try:
            pinned = dict(json.loads(manifest_path.read_text("utf-8")).get("files", {}))
        except (ValueError, AttributeError):
            problems.append(f"{MANIFEST}: not valid JSON")
    else:
        problems.append(f"{MANIFEST}: missing (generate the documents with soc2kit controls)")
    fresh_files = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    committed_files = sorted(
        p.relative_to(committed).as_posix() for p in committed.rglob("*") if p.is_file()
    )
    for name in sorted(set(committed_files) - set(fresh_files) - {MANIFEST}):
        if name.startswith("evidence/"):
            problems.append(f"{name}: no longer produced by a fresh generation")
    for name in fresh_files:
        if name == MANIFEST:
            continue
        path = committed / name
        if not path.is_file():
            problems.append(f"{name}: missing from {committed}")
            continue
        old_text = path.read_text("utf-8", errors="replace")
        if name in pinned and pinned[name] != _sha256(old_text):
            problems.append(
                f"{name}: edited after it was generated (SHA-256 differs from {MANIFEST})"
            )
        old = _normalized(name, old_text)
        new = _normalized(name, (fresh / name).read_text("utf-8"))
        if old != new:
            diff = list(
                difflib.unified_diff(
                    old.splitlines(),
                    new.splitlines(),
                    fromfile=f"committed/{name}",
                    tofile=f"fresh/{name}",
                    n=context,
                    lineterm="",
                )
            )
            shown = diff[:limit] + (
                [f"... ({len(diff) - limit} more lines)"] if len(diff) > limit else []
            )
            problems.append(f"{name}: differs from a fresh generation\n" + "\n".join(shown))
    return problems
