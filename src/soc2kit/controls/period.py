"""Period evidence for a Type II audit: the populations an auditor samples from.

Auditors ask for the complete population of events of a kind over the period
(every role change, every break-glass use, ...) and pick their own samples.
Each population is a CSV drawn from the sealed audit log only (so every row has
an inclusion proof), with the exact query recorded in the manifest so its
completeness can be judged, plus the verify result and the signed checkpoints
covering the period.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from soc2kit.audit.checkpoints import Anchor, NoteVerifier
from soc2kit.audit.export import csv_cell
from soc2kit.audit.verify import verify_log
from soc2kit.db.schema import audit_checkpoints, audit_events


@dataclass(frozen=True, slots=True)
class Population:
    name: str
    title: str
    controls: tuple[str, ...]
    criteria: tuple[str, ...]
    exact: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def condition(self) -> sa.ColumnElement[bool]:
        column = audit_events.c.event_type
        clauses: list[sa.ColumnElement[bool]] = []
        if self.exact:
            clauses.append(column.in_(self.exact))
        clauses += [column.startswith(p, autoescape=True) for p in self.prefixes]
        return sa.or_(*clauses)


POPULATIONS: tuple[Population, ...] = (
    Population(
        "authentication-failures",
        "Authentication failures",
        ("SK-AC-02",),
        ("CC6.1", "CC7.2"),
        exact=("authn.failure",),
    ),
    Population(
        "access-denials",
        "Access denials",
        ("SK-AC-01", "SK-AC-03"),
        ("CC6.1", "CC6.3", "CC7.2"),
        exact=("authz.denied", "authz.unavailable", "authz.misconfiguration"),
    ),
    Population(
        "role-changes",
        "Role assignments and removals (with approver and reason)",
        ("SK-AC-03",),
        ("CC6.2", "CC6.3"),
        prefixes=("authz.role.", "authz.principal."),
    ),
    Population(
        "policy-changes",
        "Permission grants, revocations and separation-of-duties rules",
        ("SK-AC-03",),
        ("CC6.3", "CC8.1"),
        prefixes=("authz.policy.", "authz.sod."),
    ),
    Population(
        "break-glass",
        "Break-glass grants, uses and ends",
        ("SK-AC-03",),
        ("CC6.3", "CC7.3"),
        prefixes=("authz.break_glass.",),
    ),
    Population(
        "access-reviews",
        "Access review exports and attestations",
        ("SK-AC-03",),
        ("CC6.2", "CC6.3"),
        prefixes=("access_review.",),
    ),
    Population(
        "api-key-events",
        "API key creation and revocation",
        ("SK-AC-02",),
        ("CC6.2",),
        prefixes=("apikey.",),
    ),
    Population(
        "encryption-key-events",
        "Encryption key lifecycle and re-encryption jobs",
        ("SK-CR-01", "SK-CR-02"),
        ("CC6.1", "C1.1", "C1.2"),
        prefixes=("crypto.key.", "crypto.kek.", "crypto.job."),
    ),
    Population(
        "decryption-failures",
        "Decryption failures",
        ("SK-CR-01",),
        ("CC7.2",),
        exact=("crypto.decrypt.failed",),
    ),
    Population(
        "verify-runs",
        "Audit log verification runs and their results",
        ("SK-AU-02",),
        ("CC4.1", "CC7.2"),
        exact=("audit.verify",),
    ),
    Population(
        "exports",
        "Exports of audit data and evidence",
        ("SK-AU-01",),
        ("CC6.7", "P6.2"),
        exact=("audit.export", "evidence.export", "audit.query"),
    ),
    Population(
        "service-starts",
        "Service starts and stops, with the configuration in force",
        ("SK-CF-01",),
        ("CC7.1", "CC8.1"),
        exact=("service.start", "service.stop"),
    ),
)

COLUMNS = (
    "seq",
    "event_id",
    "occurred_at",
    "event_type",
    "action",
    "outcome",
    "actor_type",
    "actor_id",
    "roles",
    "tenant_id",
    "resource_type",
    "resource_id",
    "reason",
    "approved_by",
    "request_id",
    "route",
    "status_code",
    "changes",
    "extra",
)


def _approved_by(event: dict[str, Any]) -> Any:
    extra = event.get("extra") or {}
    if isinstance(extra, dict) and extra.get("approved_by"):
        return extra["approved_by"]
    for change in (event.get("changes") or {}).values():
        if isinstance(change, dict) and isinstance(change.get("new"), dict):
            found = change["new"].get("approved_by")
            if found:
                return found
    return None


def _row(seq: int, event: dict[str, Any]) -> list[str]:
    values = {**event, "seq": seq, "approved_by": _approved_by(event)}
    return [csv_cell(values.get(c)) for c in COLUMNS]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _aware(moment: datetime) -> datetime:
    """In UTC: SQLite stores the log's times as UTC text, so an offset must not be bound."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def export_period(
    engine: Engine,
    verifier: NoteVerifier,
    *,
    origin: str,
    anchor: Anchor | None,
    since: datetime,
    until: datetime,
    out: Path,
    max_checkpoint_age: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write populations, summary, checkpoints and manifest into ``out`` (new or empty)."""
    since, until = _aware(since), _aware(until)
    if until <= since:
        raise ValueError("--until must be after --since")
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    files: dict[str, str] = {}

    def put(name: str, data: bytes) -> None:
        (out / name).write_bytes(data)
        files[name] = _sha256(data)

    report = verify_log(
        engine, verifier, origin=origin, anchor=anchor, max_checkpoint_age=max_checkpoint_age
    )
    put("verify.json", (json.dumps(report.to_dict(), indent=2) + "\n").encode())
    populations: list[dict[str, Any]] = []
    with engine.connect() as conn:
        for population in POPULATIONS:
            if progress is not None:
                progress(population.name)
            query = (
                sa.select(audit_events.c.seq, audit_events.c.event)
                .where(audit_events.c.occurred_at >= since)
                .where(audit_events.c.occurred_at < until)
                .where(population.condition())
                .order_by(audit_events.c.seq)
            )
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(COLUMNS)
            count = 0
            for seq, raw in conn.execute(query).yield_per(1000):
                writer.writerow(_row(seq, json.loads(raw)))
                count += 1
            name = f"{population.name}.csv"
            put(name, buffer.getvalue().encode("utf-8"))
            populations.append(
                {
                    "name": population.name,
                    "title": population.title,
                    "file": name,
                    "rows": count,
                    "controls": list(population.controls),
                    "criteria": list(population.criteria),
                    "query": str(
                        query.compile(engine, compile_kwargs={"literal_binds": True})
                    ).replace("\n", " "),
                }
            )
        start_ts, end_ts = int(since.timestamp()), int(until.timestamp())
        in_period = conn.execute(
            sa.select(
                audit_checkpoints.c.size, audit_checkpoints.c.timestamp, audit_checkpoints.c.note
            )
            .where(audit_checkpoints.c.timestamp >= start_ts)
            .where(audit_checkpoints.c.timestamp < end_ts)
            .order_by(audit_checkpoints.c.id)
        ).all()
        # The first checkpoint at or after the period's end commits to every event in it.
        closing = conn.execute(
            sa.select(
                audit_checkpoints.c.size, audit_checkpoints.c.timestamp, audit_checkpoints.c.note
            )
            .where(audit_checkpoints.c.timestamp >= end_ts)
            .order_by(audit_checkpoints.c.id)
            .limit(1)
        ).first()
        sealed_total = conn.execute(
            sa.select(sa.func.count())
            .select_from(audit_events)
            .where(audit_events.c.occurred_at >= since)
            .where(audit_events.c.occurred_at < until)
        ).scalar_one()
    notes = [row.note for row in in_period] + ([closing.note] if closing is not None else [])
    put("checkpoints.txt", "\n".join(notes).encode("utf-8"))
    summary = _summary(
        since,
        until,
        populations,
        report.to_dict(),
        len(in_period),
        closing is not None,
        sealed_total,
    )
    put("summary.md", summary.encode("utf-8"))
    manifest = {
        "kind": "soc2kit period evidence",
        "origin": origin,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "generated": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "events_in_period": sealed_total,
        "verify_status": report.status,
        "checkpoints_in_period": len(in_period),
        "closing_checkpoint": closing is not None,
        "populations": populations,
        "files": dict(sorted(files.items())),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return manifest


def _summary(
    since: datetime,
    until: datetime,
    populations: list[dict[str, Any]],
    verify: dict[str, Any],
    checkpoints: int,
    closed: bool,
    total: int,
) -> str:
    lines = [
        f"# Period evidence: {since.isoformat()} to {until.isoformat()}",
        "",
        f"- Sealed audit events in the period: {total}",
        f"- Audit log verify (whole log, at export time): **{verify['status']}**"
        + (
            f" (first failure at seq {verify['first_failure']}: {verify['reason']})"
            if verify["status"] == "fail"
            else ""
        ),
        f"- Signed checkpoints in the period: {checkpoints}; closing checkpoint after the "
        f"period: {'yes' if closed else 'NO (the period is not yet covered by a checkpoint)'}",
        "",
        "Populations are drawn from the sealed log only; the query for each is in "
        "manifest.json. Events still in the inbox (unsealed) are not included: see the "
        "backlog check in verify.json.",
        "",
        "| population | rows | soc2kit controls | criteria | file |",
        "|---|---|---|---|---|",
    ]
    for p in populations:
        lines.append(
            f"| {p['title']} | {p['rows']} | {', '.join(p['controls'])} | "
            f"{', '.join(p['criteria'])} | `{p['file']}` |"
        )
    lines.append("")
    lines.append(
        "This is evidence for an auditor's own sampling; it is not a SOC 2 report and does "
        "not conclude on any criterion."
    )
    return "\n".join(lines) + "\n"
