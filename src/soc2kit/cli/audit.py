"""``soc2kit audit``: verify the sealed log, prove one event, print the verifier key.

``verify`` prints one line per check and exits 0 when everything holds, 1 on an
integrity failure (naming the first failing ``seq``), 2 when the result is
incomplete or stale (no anchor, an old checkpoint, an unsealed backlog).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from soc2kit.cli.apikeys import DatabaseUrl, _fail
from soc2kit.errors import Soc2kitError

audit_app = typer.Typer(help="The sealed audit log.", no_args_is_help=True)


def _settings_and_engine(database_url: str | None):  # type: ignore[no-untyped-def]
    from soc2kit import db
    from soc2kit.settings import Settings

    settings = Settings()
    return settings, db.create_engine(database_url or settings.database_url)


@audit_app.command("verify")
def verify(
    database_url: DatabaseUrl = None,
    anchor: Annotated[
        Path | None, typer.Option(help="Anchor directory (default: audit_anchor_dir).")
    ] = None,
    vkey: Annotated[
        str | None,
        typer.Option(help="Verifier key to trust (default: derived from the signing key)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record",
            help="Append this run and its result to the log as an audit.verify event (for "
            "the scheduled run, where the service's settings and signing key are); exit 2 "
            "if it cannot be recorded. Off by default: verifying needs read access only.",
        ),
    ] = False,
) -> None:
    """Recompute every leaf, root, signature and anchor; exit 0, 1 (tampered) or 2 (stale)."""
    from soc2kit.audit.checkpoints import Anchor, DirectoryAnchor, NoteVerifier
    from soc2kit.audit.setup import build_anchor, build_signer
    from soc2kit.audit.verify import verify_log
    from soc2kit.errors import ConfigurationError

    settings, engine = _settings_and_engine(database_url)
    try:
        try:
            verifier = NoteVerifier.from_vkey(vkey) if vkey else build_signer(settings).verifier()
        except ConfigurationError as exc:
            # 3: a usage or configuration problem, apart from tampered (1) and incomplete (2).
            raise _fail(str(exc), code=3) from None
        store: Anchor | None = (
            DirectoryAnchor(anchor) if anchor is not None else build_anchor(settings, check=False)
        )
        report = verify_log(
            engine,
            verifier,
            origin=settings.audit_origin,
            anchor=store,
            max_checkpoint_age=settings.audit_max_checkpoint_age_seconds,
        )
        recorded = not record or _record_verify(settings, engine, report)
    finally:
        engine.dispose()
    out = Console(soft_wrap=True, highlight=False)
    if as_json:
        out.print(json.dumps(report.to_dict(), indent=2), markup=False)
    else:
        for check in report.checks:
            out.print(f"{check.name:<11} {check.status.upper():<10} {check.detail}", markup=False)
        if report.status == "fail":
            out.print(
                f"RESULT      FAIL       first failure at seq {report.first_failure}: "
                f"{report.reason}",
                markup=False,
            )
        elif report.status == "incomplete":
            out.print(f"RESULT      INCOMPLETE {report.reason}", markup=False)
        else:
            out.print(f"RESULT      PASS       {report.checked} events verified", markup=False)
    if not recorded:
        # The result stands, but the run left no evidence: report it as incomplete.
        Console(stderr=True).print(
            "warning: this verify run could not be recorded in the audit log", markup=False
        )
        raise typer.Exit(max(report.exit_code, 2))
    raise typer.Exit(report.exit_code)


def _record_verify(settings: Any, engine: Any, report: Any) -> bool:
    """Append an ``audit.verify`` event (sealed before returning); False when it failed."""
    from sqlalchemy.exc import SQLAlchemyError

    from soc2kit.audit.setup import build_trail
    from soc2kit.errors import Soc2kitError

    try:
        trail = build_trail(settings, engine)
        try:
            trail.record(
                "audit.verify",
                action="verify",
                outcome="success" if report.status == "pass" else "failure",
                actor="cli",
                reason=report.reason,
                durability="critical",
                verify_status=report.status,
                checked=report.checked,
                first_failure=report.first_failure,
            )
        finally:
            trail.close()
    except (SQLAlchemyError, Soc2kitError, OSError):
        return False
    return True


@audit_app.command("prove")
def prove(
    event: Annotated[str, typer.Option("--event", help="The event id.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Print an inclusion proof (JSON) an auditor can check offline with the verifier key."""
    from soc2kit.audit.setup import build_signer
    from soc2kit.audit.verify import prove as build_proof

    settings, engine = _settings_and_engine(database_url)
    try:
        try:
            bundle = build_proof(engine, event)
        except LookupError as exc:
            raise _fail(str(exc), code=1) from None
    finally:
        engine.dispose()
    bundle["vkey"] = build_signer(settings).vkey
    Console(soft_wrap=True).print(json.dumps(bundle, indent=2), markup=False, highlight=False)


@audit_app.command("check-proof")
def check_proof(
    bundle_file: Annotated[Path, typer.Argument(help="A proof printed by `audit prove`.")],
    vkey: Annotated[str, typer.Option(help="The verifier key you trust (not the bundle's).")],
) -> None:
    """Check a proof offline: no database, only the proof file and the verifier key."""
    from soc2kit.audit.checkpoints import NoteVerifier
    from soc2kit.audit.verify import check_proof as check

    try:
        bundle = json.loads(bundle_file.read_text("utf-8"))
    except (OSError, ValueError):
        raise _fail(f"{bundle_file} is not a readable proof file") from None
    if not isinstance(bundle, dict) or not check(bundle, NoteVerifier.from_vkey(vkey)):
        raise _fail("the proof does NOT verify against this key", code=1)
    Console().print(f"proof OK: seq {bundle['seq']} is in the signed log", markup=False)


@audit_app.command("public-key")
def public_key() -> None:
    """Print the verifier key (C2SP note format) auditors use to check checkpoints."""
    from soc2kit.audit.setup import build_signer
    from soc2kit.settings import Settings

    Console(soft_wrap=True).print(build_signer(Settings()).vkey, markup=False, highlight=False)


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="An empty or new directory.")],
    since: Annotated[str | None, typer.Option(help="ISO date/time, inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO date/time, exclusive.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write an evidence bundle: events (JSONL, CSV), checkpoints, proofs, verify report,
    and a signed manifest of SHA-256 digests."""
    from datetime import datetime

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from soc2kit.audit.export import export_bundle
    from soc2kit.audit.setup import build_anchor, build_signer
    from soc2kit.audit.trail import AuditTrail
    from soc2kit.errors import ConfigurationError

    try:
        start = datetime.fromisoformat(since) if since else None
        end = datetime.fromisoformat(until) if until else None
    except ValueError:
        raise _fail("--since and --until take ISO dates such as 2026-01-01") from None
    settings, engine = _settings_and_engine(database_url)
    try:
        try:
            signer = build_signer(settings)
        except ConfigurationError as exc:
            raise _fail(str(exc), code=3) from None
        from soc2kit.audit.setup import build_trail

        trail: AuditTrail = build_trail(settings, engine)
        try:
            # Exporting evidence is itself evidence: recorded before the bundle is written.
            trail.record(
                "audit.export",
                action="export",
                outcome="success",
                actor="cli",
                since=since,
                until=until,
                out=str(out),
            )
            with Progress(
                SpinnerColumn(),
                TextColumn("exporting"),
                TextColumn("{task.completed} events"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            ) as bar:
                task = bar.add_task("export", total=None)
                try:
                    manifest = export_bundle(
                        engine,
                        signer,
                        origin=settings.audit_origin,
                        anchor=build_anchor(settings, check=False),
                        out=out,
                        since=start,
                        until=end,
                        max_checkpoint_age=settings.audit_max_checkpoint_age_seconds,
                        progress=lambda n: bar.update(task, completed=n),
                    )
                except FileExistsError as exc:
                    raise _fail(str(exc)) from None
        finally:
            trail.close()
    finally:
        engine.dispose()
    Console().print(
        f"{manifest['events']} events exported to {out} (verify: {manifest['verify_status']}); "
        f"manifest signed by {signer.name}",
        markup=False,
    )


@audit_app.command("verify-bundle")
def verify_bundle_command(
    bundle_dir: Annotated[Path, typer.Argument(help="A folder written by `audit export`.")],
    vkey: Annotated[str, typer.Option(help="The verifier key you trust (not the bundle's).")],
) -> None:
    """Check an exported bundle offline: signed manifest, every file's SHA-256, every proof."""
    from soc2kit.audit.checkpoints import NoteVerifier
    from soc2kit.audit.export import verify_bundle

    try:
        verifier = NoteVerifier.from_vkey(vkey)
    except (ValueError, Soc2kitError):
        raise _fail("--vkey is not a verifier key (see `soc2kit audit public-key`)") from None
    try:
        problems = verify_bundle(bundle_dir, verifier)
    except (OSError, ValueError, KeyError, TypeError):
        raise _fail(f"{bundle_dir} is not a readable evidence bundle", code=1) from None
    out = Console(soft_wrap=True, highlight=False)
    for problem in problems:
        out.print(f"FAIL {problem}", markup=False)
    if problems:
        raise typer.Exit(1)
    out.print(f"bundle OK: {bundle_dir} is signed by this key and every file matches", markup=False)
