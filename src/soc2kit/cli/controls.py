"""``soc2kit controls``: the control mapping, OSCAL and evidence, generated from the app.

``--check`` regenerates into a temporary folder and exits 1 when the committed
documents differ in substance, so CI fails when they drift from the code.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from soc2kit.errors import ConfigurationError


def controls(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the documents.")],
    app_ref: Annotated[
        str | None,
        typer.Option("--app", help="module:attribute (default: \\[tool.soc2kit] app)."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when the documents in --out are stale.")
    ] = False,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="pytest --junitxml file to attach.")
    ] = None,
    pip_audit: Annotated[
        Path | None, typer.Option("--pip-audit", help="pip-audit --format json file to attach.")
    ] = None,
    criteria: Annotated[
        list[str] | None,
        typer.Option(
            "--criteria",
            help="Optional trust categories in scope (availability, confidentiality, "
            "processing-integrity, privacy); default: \\[tool.soc2kit] trust_criteria.",
        ),
    ] = None,
    period_days: Annotated[
        int, typer.Option(help="Days of audit history summarised.", min=1, max=3660)
    ] = 90,
) -> None:
    """Write controls.md/.html, component-definition.json, evidence/ and manifest.json."""
    from soc2kit.cli.loader import load_object
    from soc2kit.controls.generate import collect, compare, parse_scope, project_config, write

    config = project_config()
    ref = app_ref or config.get("app")
    if not isinstance(ref, str) or not ref:
        raise ConfigurationError("--app module:attribute is required (or [tool.soc2kit] app)")
    raw_scope = criteria if criteria is not None else config.get("trust_criteria", [])
    if not isinstance(raw_scope, list) or not all(isinstance(v, str) for v in raw_scope):
        raise ConfigurationError("[tool.soc2kit] trust_criteria must be a list of names")
    scope = parse_scope(raw_scope)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigurationError(f"--out {out_dir} exists and is not a folder")
    if check and not out_dir.is_dir():
        raise ConfigurationError(f"{out_dir} does not exist: generate it first (without --check)")
    report = collect(
        load_object(ref),
        app_ref=ref,
        scope=scope,
        junit=junit,
        pip_audit=pip_audit,
        period_days=period_days,
    )
    out = Console(soft_wrap=True, highlight=False)
    counts = report.counts()
    summary = (
        f"{counts['service-provided'] + counts['shared']} criteria provided or shared by the "
        f"service, {counts['organization-provided']} organization-provided, "
        f"{counts['out-of-scope']} out of scope"
    )
    if not check:
        generated = write(report, out_dir)
        out.print(f"wrote {len(generated.files) + 1} files to {out_dir}: {summary}", markup=False)
        failing = [e.id for e in report.evidence if e.result == "fail"]
        if failing:
            out.print(f"evidence with findings: {', '.join(failing)}", markup=False)
        return
    with tempfile.TemporaryDirectory(prefix="soc2kit-controls-") as tmp:
        write(report, Path(tmp))
        problems = compare(out_dir, Path(tmp))
    if not problems:
        out.print(f"{out_dir} is up to date ({summary})", markup=False)
        return
    for problem in problems:
        out.print(problem, markup=False)
    out.print(
        f"{len(problems)} difference(s): run `soc2kit controls --out {out_dir}` "
        "and commit the result",
        markup=False,
    )
    raise typer.Exit(1)


def _when(text: str, option: str) -> datetime:
    from soc2kit.errors import ConfigurationError

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(f"{option} takes an ISO date such as 2026-01-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def evidence(
    since: Annotated[str, typer.Option("--since", help="Period start (ISO date), inclusive.")],
    until: Annotated[str, typer.Option("--until", help="Period end (ISO date), exclusive.")],
    out_dir: Annotated[Path, typer.Option("--out", help="A new or empty folder.")],
    database_url: Annotated[
        str | None,
        typer.Option(help="Defaults to SOC2KIT_DATABASE_URL / the settings default."),
    ] = None,
) -> None:
    """Type II populations per control (CSV), counts, verify result and covering checkpoints."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from soc2kit import db
    from soc2kit.audit.setup import build_anchor, build_signer, build_trail
    from soc2kit.controls.period import export_period
    from soc2kit.settings import Settings

    start, end = _when(since, "--since"), _when(until, "--until")
    if end <= start:
        raise ConfigurationError("--until must be after --since")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigurationError(f"{out_dir} is not an empty folder")
    settings = Settings()
    engine = db.create_engine(database_url or settings.database_url)
    try:
        signer = build_signer(settings)
        trail = build_trail(settings, engine)
        try:
            # Exporting evidence is itself evidence: recorded before anything is written.
            trail.record(
                "evidence.export",
                action="export",
                outcome="success",
                actor="cli",
                since=start.isoformat(),
                until=end.isoformat(),
                out=str(out_dir),
            )
        finally:
            trail.close()
        with Progress(
            SpinnerColumn(),
            TextColumn("exporting {task.description}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task("populations", total=None)
            manifest = export_period(
                engine,
                signer.verifier(),
                origin=settings.audit_origin,
                anchor=build_anchor(settings, check=False),
                since=start,
                until=end,
                out=out_dir,
                max_checkpoint_age=settings.audit_max_checkpoint_age_seconds,
                progress=lambda name: bar.update(task, description=name),
            )
    finally:
        engine.dispose()
    rows = sum(p["rows"] for p in manifest["populations"])
    Console(soft_wrap=True, highlight=False).print(
        f"{len(manifest['populations'])} populations ({rows} rows) for "
        f"{manifest['events_in_period']} sealed events written to {out_dir}; audit verify: "
        f"{manifest['verify_status']}",
        markup=False,
    )
