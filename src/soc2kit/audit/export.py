"""Evidence bundles for auditors: ``soc2kit audit export --since --until --out DIR``.

A directory holding the events of a time range (JSONL, and CSV for a
spreadsheet), every signed checkpoint, inclusion proofs of the exported events
against the latest checkpoint, the verify report of the whole log, and a
manifest with the SHA-256 of each file, signed with the log's key. An auditor
checks it offline with the verifier key (``verify_bundle``).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from soc2kit.audit.checkpoints import Anchor, NoteVerifier, Signer
from soc2kit.audit.merkle import inclusion_proof
from soc2kit.audit.verify import check_proof, verify_log
from soc2kit.db.schema import audit_checkpoints, audit_events, audit_tree

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
_CSV_COLUMNS = (
    "seq",
    "event_id",
    "occurred_at",
    "event_type",
    "action",
    "outcome",
    "actor_id",
    "resource_type",
    "resource_id",
    "request_id",
)


def export_bundle(
    engine: Engine,
    signer: Signer,
    *,
    origin: str,
    anchor: Anchor | None,
    out: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    max_checkpoint_age: float = 900.0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write the bundle into ``out`` (created; must be empty) and return its manifest."""
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    report = verify_log(
        engine,
        signer.verifier(),
        origin=origin,
        anchor=anchor,
        max_checkpoint_age=max_checkpoint_age,
    )
    (out / "verify-report.json").write_text(json.dumps(report.to_dict(), indent=2), "utf-8")
    with engine.connect() as conn:
        notes = [
            row.note
            for row in conn.execute(
                sa.select(audit_checkpoints.c.note).order_by(audit_checkpoints.c.id)
            )
        ]
        (out / "checkpoints.txt").write_text("\n".join(notes), "utf-8")
        latest = conn.execute(
            sa.select(audit_checkpoints.c.size, audit_checkpoints.c.note)
            .order_by(audit_checkpoints.c.size.desc(), audit_checkpoints.c.id.desc())
            .limit(1)
        ).first()
        query = sa.select(audit_events).order_by(audit_events.c.seq)
        if since is not None:
            query = query.where(audit_events.c.occurred_at >= since)
        if until is not None:
            query = query.where(audit_events.c.occurred_at < until)
        nodes: dict[tuple[int, int], bytes] = {}

        def node(level: int, index: int) -> bytes:
            key = (level, index)
            if key not in nodes:  # proofs of neighbouring events share most nodes
                nodes[key] = bytes(
                    conn.execute(
                        sa.select(audit_tree.c.hash).where(
                            audit_tree.c.level == level, audit_tree.c.idx == index
                        )
                    ).scalar_one()
                )
            return nodes[key]

        count = 0
        with (
            (out / "events.jsonl").open("w", encoding="utf-8") as jsonl,
            (out / "events.csv").open("w", encoding="utf-8", newline="") as table,
            (out / "proofs.jsonl").open("w", encoding="utf-8") as proofs,
        ):
            writer = csv.writer(table)
            writer.writerow(_CSV_COLUMNS)
            for row in conn.execute(query):
                seq = int(row.seq)
                jsonl.write(json.dumps({"seq": seq, "event": row.event}) + "\n")
                writer.writerow([csv_cell(getattr(row, c)) for c in _CSV_COLUMNS])
                if latest is not None and seq <= int(latest.size):
                    proof = inclusion_proof(seq - 1, int(latest.size), node)
                    proofs.write(
                        json.dumps(
                            {
                                "seq": seq,
                                "tree_size": int(latest.size),
                                "proof": [p.hex() for p in proof],
                            }
                        )
                        + "\n"
                    )
                count += 1
                if progress is not None and count % 1000 == 0:
                    progress(count)
        (out / "latest-checkpoint.txt").write_text(latest.note if latest else "", "utf-8")
    (out / "verifier-key.txt").write_text(signer.vkey + "\n", "utf-8")
    manifest = {
        "format": "soc2kit-evidence-bundle/1",
        "origin": origin,
        "created_at": datetime.now(UTC).isoformat(),
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "events": count,
        "verify_status": report.status,
        "files": {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.iterdir())
            if p.is_file()
        },
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    (out / MANIFEST).write_bytes(body)
    (out / SIGNATURE).write_text(signer.sign_manifest(body) + "\n", "utf-8")
    if progress is not None:
        progress(count)
    return manifest


def verify_bundle(out: Path, verifier: NoteVerifier) -> list[str]:
    """Problems found in a bundle (empty: the manifest is signed and every file matches)."""
    problems: list[str] = []
    body = (out / MANIFEST).read_bytes()
    if not verifier.verify_manifest(body, (out / SIGNATURE).read_text("utf-8").strip()):
        return ["the manifest signature does not verify with this key"]
    manifest = json.loads(body)
    for name, digest in manifest["files"].items():
        path = out / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name} does not match the manifest")
    latest = (out / "latest-checkpoint.txt").read_text("utf-8")
    if latest and not problems:
        events = {
            int(line["seq"]): line["event"]
            for line in map(json.loads, (out / "events.jsonl").read_text("utf-8").splitlines())
        }
        for line in (out / "proofs.jsonl").read_text("utf-8").splitlines():
            proof = json.loads(line)
            bundle = {**proof, "event": events[int(proof["seq"])], "checkpoint": latest}
            if not check_proof(bundle, verifier):
                problems.append(f"seq {proof['seq']}: its inclusion proof does not verify")
                break
    return problems


def csv_cell(value: Any) -> str:
    """A value as a CSV cell an auditor can open in a spreadsheet safely.

    A leading = + - @ (or tab, carriage return) makes spreadsheets evaluate the
    cell (OWASP CSV injection): it is neutralised with a quote. Dicts and lists
    become compact JSON.
    """
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    else:
        text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
