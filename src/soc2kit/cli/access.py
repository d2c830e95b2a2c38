"""CLI for the access policy: CSV import/export, principal revocation, access reviews."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

from soc2kit.errors import ConfigurationError

policy_app = typer.Typer(help="The access policy (casbin CSV lines).", no_args_is_help=True)
principals_app = typer.Typer(help="Revoke or reinstate a subject.", no_args_is_help=True)
review_app = typer.Typer(help="Periodic access reviews (CC6.2/CC6.3).", no_args_is_help=True)

out = Console()

DatabaseUrl = Annotated[
    str | None, typer.Option(help="Defaults to SOC2KIT_DATABASE_URL / the settings default.")
]
REVIEW_FIELDS = (
    "subject",
    "role",
    "tenant",
    "source",
    "granted_by",
    "approved_by",
    "reason",
    "granted_at",
    "expires_at",
    "last_seen_at",
    "revoked",
)


@contextmanager
def open_policy(database_url: str | None) -> Any:
    """A Policy (and its audit trail) on the configured database, without an app."""
    from soc2kit import db
    from soc2kit.audit.setup import build_trail
    from soc2kit.authz.policy import Policy
    from soc2kit.settings import Settings

    settings = Settings()
    url = database_url or settings.database_url
    engine = db.create_engine(url)
    try:
        if settings.migrate_on_install:
            db.upgrade(engine)
        elif db.current_revision(engine) != db.head_revision():
            raise ConfigurationError("soc2kit tables are not current: run `soc2kit db upgrade`")
        audit = build_trail(settings, engine)
        try:
            yield Policy(engine, audit, settings), audit
        finally:
            audit.close()
    finally:
        engine.dispose()


@policy_app.command("export")
def policy_export(
    out_file: Annotated[Path | None, typer.Option("--out", help="File; default stdout.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write grants, standing assignments and inheritance as casbin CSV lines."""
    with open_policy(database_url) as (policy, _):
        text = policy.export_csv()
    if out_file is None:
        out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    else:
        out_file.write_text(text, encoding="utf-8")
        out.print(f"wrote {len(text.splitlines())} lines to {out_file}")


@policy_app.command("import")
def policy_import(
    file: Annotated[Path, typer.Argument(help="CSV lines as written by `policy export`.")],
    actor: Annotated[str, typer.Option(help="Who is importing (recorded).")],
    reason: Annotated[str, typer.Option(help="Why (recorded), e.g. the pull request.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Add every line of FILE to the policy (existing lines are left as they are)."""
    text = _read(file)
    with open_policy(database_url) as (policy, _):
        added = policy.import_csv(text, actor=actor, reason=reason)
    out.print(f"{added} new policy lines")


@principals_app.command("revoke")
def principals_revoke(
    subject: str,
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
    actor: Annotated[str, typer.Option(help="Who revokes (recorded).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Make every credential of SUBJECT fail from now on, on every replica."""
    with open_policy(database_url) as (policy, _):
        changed = policy.revoke_principal(subject, reason=reason, actor=actor)
    out.print(f"{subject} revoked" if changed else f"{subject} was already revoked")


@principals_app.command("reinstate")
def principals_reinstate(
    subject: str,
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
    actor: Annotated[str, typer.Option(help="Who reinstates (recorded).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Lift a revocation."""
    with open_policy(database_url) as (policy, _):
        changed = policy.reinstate_principal(subject, reason=reason, actor=actor)
    out.print(f"{subject} reinstated" if changed else f"{subject} was not revoked")


@review_app.command("export")
def review_export(
    fmt: Annotated[Literal["csv", "json"], typer.Option("--format")] = "csv",
    out_file: Annotated[Path | None, typer.Option("--out", help="File; default stdout.")] = None,
    actor: Annotated[str, typer.Option(help="Who exports (recorded).")] = "cli",
    database_url: DatabaseUrl = None,
) -> None:
    """Every subject with roles, source, granted by, when, expiry and last use."""
    with open_policy(database_url) as (policy, audit):
        rows = [_review_dict(asdict(r)) for r in policy.access_review()]
        audit.record(
            "access_review.export",
            action="export",
            outcome="success",
            actor=actor,
            resource_type="access_review",
            rows=len(rows),
            format=fmt,
        )
    text = _render(rows, fmt)
    if out_file is None:
        out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    else:
        out_file.write_text(text, encoding="utf-8")
        out.print(f"wrote {len(rows)} rows to {out_file}")


@review_app.command("attest")
def review_attest(
    reviewer: Annotated[str, typer.Option(help="Who reviewed the export.")],
    file: Annotated[Path, typer.Option("--file", help="The reviewed export.")],
    notes: Annotated[str | None, typer.Option(help="Findings or decisions.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Record the reviewer's sign-off of an export as an audit event (with its SHA-256)."""
    data = file.read_bytes() if file.is_file() else None
    if data is None:
        raise ConfigurationError(f"cannot read {file}")
    rows = _count_rows(data)
    digest = hashlib.sha256(data).hexdigest()
    with open_policy(database_url) as (_, audit):
        audit.record(
            "access_review.attest",
            action="attest",
            outcome="success",
            actor=reviewer,
            resource_type="access_review",
            resource_id=digest,
            reason=notes,
            file_name=file.name,
            rows=rows,
        )
    out.print(f"attested {file.name} ({rows} rows, sha256 {digest[:16]}…) by {reviewer}")


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {file}: {type(exc).__name__}") from None


def _review_dict(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def _render(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REVIEW_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _count_rows(data: bytes) -> int:
    text = data.decode("utf-8", "replace")
    if text.lstrip().startswith("["):
        try:
            return len(json.loads(text))
        except ValueError:
            raise ConfigurationError("the file is not a valid access-review export") from None
    return max(0, sum(1 for _ in csv.reader(io.StringIO(text))) - 1)
