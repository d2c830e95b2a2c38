"""`soc2kit audit verify --record` leaves a record of its run; `audit verify-bundle` checks
exports."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from tests.audit.tamper_helpers import key_whose_base64_has
from tests.cli.test_audit_cli import Seeded, audit, seed, tamper

from soc2kit.db import create_engine
from soc2kit.db.schema import audit_events, audit_inbox


def _verify_events(log: Seeded) -> list[dict[str, object]]:
    engine = create_engine(log.database_url)
    try:
        with engine.connect() as conn:
            pending = conn.execute(sa.select(sa.func.count()).select_from(audit_inbox)).scalar()
            rows = conn.execute(
                sa.select(audit_events.c.event).where(audit_events.c.event_type == "audit.verify")
            ).scalars()
            events = [json.loads(r) for r in rows]
    finally:
        engine.dispose()
    assert pending == 0  # the run's record is sealed before the command returns
    return events


def test_each_verify_run_is_recorded_with_its_result(tmp_path: Path) -> None:
    byte, _ = key_whose_base64_has(plus=False)
    log = seed(tmp_path, key_byte=byte)
    assert audit(log, "verify").returncode == 0  # read-only by default: nothing recorded
    assert _verify_events(log) == []
    assert audit(log, "verify", "--record").returncode == 0
    first = _verify_events(log)
    assert len(first) == 1
    assert first[0]["outcome"] == "success" and first[0]["extra"]["verify_status"] == "pass"
    # The recorded run is itself sealed and checkpointed: the next verify still passes.
    again = audit(log, "verify", "--record")
    assert again.returncode == 0, again.stdout
    assert len(_verify_events(log)) == 2

    assert audit(log, "verify", "--no-record").returncode == 0
    assert len(_verify_events(log)) == 2

    tamper(log, "modify")
    failed = audit(log, "verify", "--record")
    assert failed.returncode == 1
    runs = _verify_events(log)
    assert runs[-1]["outcome"] == "failure"
    assert runs[-1]["extra"]["verify_status"] == "fail"
    assert runs[-1]["extra"]["first_failure"] == 17


def test_verify_bundle_accepts_an_export_and_refuses_an_edit_or_another_key(
    tmp_path: Path,
) -> None:
    byte, _ = key_whose_base64_has(plus=False)
    log = seed(tmp_path, key_byte=byte)
    out = tmp_path / "bundle"
    assert audit(log, "export", "--out", str(out)).returncode == 0
    ok = audit(log, "verify-bundle", str(out), "--vkey", log.vkey)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("bundle OK")

    _, other = key_whose_base64_has(plus=False, skip=1)
    refused = audit(log, "verify-bundle", str(out), "--vkey", other.vkey)
    assert refused.returncode == 1
    assert "signature does not verify" in refused.stdout

    events = out / "events.csv"
    text = events.read_text()
    assert "t.e" in text
    events.write_text(text.replace("t.e", "t.E", 1))
    edited = audit(log, "verify-bundle", str(out), "--vkey", log.vkey)
    assert edited.returncode == 1
    assert "FAIL events.csv does not match the manifest" in edited.stdout

    for bad, message in (
        (["verify-bundle", str(tmp_path / "missing"), "--vkey", log.vkey], "not a readable"),
        (["verify-bundle", str(out), "--vkey", "nonsense"], "--vkey is not a verifier key"),
    ):
        result = audit(log, *bad)
        assert result.returncode != 0
        assert message in result.stderr and "Traceback" not in result.stderr


def test_a_run_that_cannot_be_recorded_is_incomplete(tmp_path: Path) -> None:
    byte, _ = key_whose_base64_has(plus=False)
    log = seed(tmp_path, key_byte=byte)
    # An auditor's host: the verifier key out of band, no signing key to seal with.
    del log.env["SOC2KIT_AUDIT_SIGNING_KEY"]
    log.env["SOC2KIT_ENVIRONMENT"] = "production"
    args = ("verify", "--vkey", log.vkey, "--anchor", str(log.anchor_dir))
    plain = audit(log, *args)
    assert plain.returncode == 0, plain.stdout + plain.stderr  # read-only check: fine
    recorded = audit(log, *args, "--record")
    assert recorded.returncode == 2, recorded.stdout + recorded.stderr
    assert recorded.stdout.splitlines()[-1].split()[:2] == ["RESULT", "PASS"]
    assert "could not be recorded" in recorded.stderr and "Traceback" not in recorded.stderr
    assert _verify_events(log) == []
