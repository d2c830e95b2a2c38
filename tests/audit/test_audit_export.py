"""Evidence bundles: complete, signed, checkable offline, and tamper-evident."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

import soc2kit
from soc2kit.audit.checkpoints import NoteVerifier, Signer
from soc2kit.audit.export import export_bundle, verify_bundle


def test_a_bundle_checks_out_offline_and_any_change_is_caught(
    make_settings: Callable[..., soc2kit.Settings], database_url: str, tmp_path: Path
) -> None:
    kit = soc2kit.install(FastAPI(), make_settings(database_url=database_url))
    for n in range(12):
        kit.audit.record("invoice.approved", action="approve", outcome="success", resource_id=n)
    kit.audit.flush()
    sealer = kit.audit.sealer
    assert sealer is not None
    out = tmp_path / "bundle"
    manifest = export_bundle(
        kit.engine, sealer.signer, origin=sealer.origin, anchor=sealer.anchor, out=out
    )
    assert manifest["events"] >= 12 and manifest["verify_status"] == "pass"
    assert set(manifest["files"]) >= {
        "events.jsonl",
        "events.csv",
        "proofs.jsonl",
        "checkpoints.txt",
        "verify-report.json",
    }
    verifier = NoteVerifier.from_vkey((out / "verifier-key.txt").read_text().strip())
    assert verify_bundle(out, verifier) == []
    lines = (out / "events.jsonl").read_text().splitlines()
    assert len(lines) == manifest["events"]

    # Another key refuses the manifest; an edited event is caught.
    other = Signer.development_key(tmp_path / "other", "someone").verifier()
    assert verify_bundle(out, other) == ["the manifest signature does not verify with this key"]
    first = json.loads(lines[0])
    first["event"] = first["event"].replace("invoice", "invoicE")
    (out / "events.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    assert verify_bundle(out, verifier) == ["events.jsonl does not match the manifest"]
    kit.shutdown()
