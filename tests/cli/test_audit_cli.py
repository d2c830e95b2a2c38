"""``soc2kit audit``: verify, prove, check-proof and public-key, as an auditor runs them.

The log is seeded in-process (SQLite, a fixed signing key), then each command
runs as ``python -m soc2kit.cli audit ...`` with the same environment.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from tests.audit.tamper_helpers import (
    allow_tampering,
    delete_checkpoints_above,
    key_whose_base64_has,
    modify_event,
    record_batches,
)

import soc2kit
from soc2kit.db import create_engine


@dataclass
class Seeded:
    env: dict[str, str]
    cwd: Path
    database_url: str
    anchor_dir: Path
    vkey: str
    event_ids: list[str]
    size: int


def seed_key(byte: int) -> str:
    return base64.urlsafe_b64encode(bytes([byte]) * 32).rstrip(b"=").decode()


def seed(tmp_path: Path, *, key_byte: int) -> Seeded:
    env = {
        "SOC2KIT_ENVIRONMENT": "test",
        "SOC2KIT_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "SOC2KIT_DATA_DIR": str(tmp_path / ".soc2kit"),
        "SOC2KIT_AUDIT_SIGNING_KEY": seed_key(key_byte),
        "SOC2KIT_AUDIT_SIGNING_KEY_NAME": "auditor",
    }
    settings = soc2kit.Settings(
        environment="test",
        database_url=env["SOC2KIT_DATABASE_URL"],
        data_dir=Path(env["SOC2KIT_DATA_DIR"]),
        audit_signing_key=env["SOC2KIT_AUDIT_SIGNING_KEY"],
        audit_signing_key_name="auditor",
    )
    kit = soc2kit.install(FastAPI(), settings)
    ids = record_batches(kit, 20, 20)
    sealer = kit.audit.sealer
    assert sealer is not None and sealer.anchor is not None
    vkey, anchor_dir = sealer.signer.vkey, sealer.anchor.path
    kit.shutdown()  # seals service.stop too: 41 events, checkpoints 20, 40 and 41
    return Seeded(env, tmp_path, env["SOC2KIT_DATABASE_URL"], anchor_dir, vkey, ids, 41)


@pytest.fixture
def log(tmp_path: Path) -> Seeded:
    byte, _ = key_whose_base64_has(plus=False)  # see test_vkey_with_a_plus below
    return seed(tmp_path, key_byte=byte)


def audit(log: Seeded, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC2KIT_")}
    env.update(log.env, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "soc2kit.cli", "audit", *args],
        cwd=log.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def tamper(log: Seeded, action: str) -> None:
    engine = create_engine(log.database_url)
    try:
        allow_tampering(engine)
        if action == "modify":
            modify_event(engine, 17)
        else:
            assert delete_checkpoints_above(engine, 20) == 2
    finally:
        engine.dispose()


def test_verify_passes_an_untouched_log_and_refuses_another_key(log: Seeded) -> None:
    result = audit(log, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for check in ("signatures", "leaves", "anchors", "freshness", "backlog"):
        assert any(line.split()[:2] == [check, "PASS"] for line in lines), result.stdout
    assert lines[-1].split() == ["RESULT", "PASS", str(log.size), "events", "verified"]

    _, other = key_whose_base64_has(plus=False, skip=1)
    refused = audit(log, "verify", "--vkey", other.vkey)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "no signature by" in refused.stdout

    log.env["SOC2KIT_AUDIT_MAX_CHECKPOINT_AGE_SECONDS"] = "0.000001"
    stale = audit(log, "verify")
    assert stale.returncode == 2, stale.stdout + stale.stderr
    assert stale.stdout.splitlines()[-1].startswith("RESULT      INCOMPLETE latest checkpoint")


def test_verify_names_the_first_tampered_seq_in_text_and_json(log: Seeded) -> None:
    tamper(log, "modify")
    result = audit(log, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "RESULT      FAIL       first failure at seq 17:" in result.stdout
    as_json = audit(log, "verify", "--json")
    assert as_json.returncode == 1, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["status"] == "fail"
    assert report["first_failure"] == 17 and report["checked"] == 16
    assert "sealed leaf" in report["reason"]
    assert {c["name"]: c["status"] for c in report["checks"]}["leaves"] == "fail"


def test_deleted_checkpoints_are_caught_by_the_anchor_store(log: Seeded, tmp_path: Path) -> None:
    auditor_copy = shutil.copytree(log.anchor_dir, tmp_path / "auditor-anchors")
    tamper(log, "delete-checkpoints")
    result = audit(log, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "anchored checkpoint at size 40 is missing from the database" in result.stdout
    shutil.rmtree(log.anchor_dir, ignore_errors=True)  # the default store is gone too...
    copy = audit(log, "verify", "--anchor", str(auditor_copy))  # ...the auditor's copy holds
    assert copy.returncode == 1, copy.stdout + copy.stderr
    assert "first failure at seq 40" in copy.stdout


def test_prove_then_check_proof_with_the_public_key(log: Seeded, tmp_path: Path) -> None:
    public = audit(log, "public-key")
    assert public.returncode == 0, public.stderr
    vkey = public.stdout.strip()
    assert vkey == log.vkey
    proof = audit(log, "prove", "--event", log.event_ids[22])
    assert proof.returncode == 0, proof.stderr
    bundle = json.loads(proof.stdout)
    assert bundle["seq"] == 23 and bundle["tree_size"] == log.size
    path = tmp_path / "proof.json"
    path.write_text(proof.stdout)

    ok = audit(log, "check-proof", str(path), "--vkey", vkey)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == "proof OK: seq 23 is in the signed log"

    _, other = key_whose_base64_has(plus=False, skip=1)
    refused = audit(log, "check-proof", str(path), "--vkey", other.vkey)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == ["error: the proof does NOT verify against this key"]


def test_vkey_with_a_plus_is_accepted(tmp_path: Path) -> None:
    byte, _ = key_whose_base64_has(plus=True)
    log = seed(tmp_path, key_byte=byte)
    assert log.vkey.split("+", 2)[2].count("+") >= 1
    result = audit(log, "verify", "--vkey", log.vkey)
    assert result.returncode == 0, result.stdout + result.stderr
