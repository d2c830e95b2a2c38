"""soc2kit policy / principals / access-review commands against a real database."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

import soc2kit


def cli(args: list[str], cwd: Path, db: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC2KIT_")}
    env.update(
        {
            "SOC2KIT_DATA_DIR": str(cwd / ".soc2kit"),
            "SOC2KIT_DATABASE_URL": db,
            "SOC2KIT_ENVIRONMENT": "test",
            "COLUMNS": "200",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "soc2kit.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def audit_types(db: str) -> list[str]:
    engine = sa.create_engine(soc2kit.db.normalize_url(db))
    try:
        with engine.connect() as conn:
            return [
                r[0]
                for r in conn.execute(
                    sa.text("SELECT event_type FROM soc2kit_audit_events ORDER BY seq")
                )
            ]
    finally:
        engine.dispose()


def test_policy_import_export_and_review(tmp_path: Path, database_url: str) -> None:
    policy_file = tmp_path / "policy.csv"
    policy_file.write_text(
        "# reviewed in pull requests\n"
        "p, role:clerk, *, invoices, read\n"
        'p, role:clerk, *, "invoices,archive", read\n'
        "g, user:alice, role:clerk, acme\n"
        "g, role:senior, role:clerk, *\n"
    )
    r = cli(
        ["policy", "import", str(policy_file), "--actor", "ci", "--reason", "PR #12"],
        tmp_path,
        database_url,
    )
    assert r.returncode == 0, r.stderr
    assert "4 new policy lines" in r.stdout
    r = cli(["policy", "export"], tmp_path, database_url)
    assert r.returncode == 0, r.stderr
    lines = set(r.stdout.splitlines())
    assert 'p,role:clerk,*,"invoices,archive",read' in lines
    assert "g,user:alice,role:clerk,acme" in lines

    r = cli(
        ["access-review", "export", "--format", "csv", "--out", str(tmp_path / "rev.csv")],
        tmp_path,
        database_url,
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "rev.csv").read_text())))
    assert [(x["subject"], x["role"], x["tenant"], x["source"]) for x in rows] == [
        ("alice", "clerk", "acme", "store")
    ]
    r = cli(["access-review", "export", "--format", "json"], tmp_path, database_url)
    assert json.loads(r.stdout)[0]["granted_by"] == "ci"

    r = cli(
        [
            "access-review",
            "attest",
            "--reviewer",
            "cfo",
            "--file",
            str(tmp_path / "rev.csv"),
            "--notes",
            "no findings",
        ],
        tmp_path,
        database_url,
    )
    assert r.returncode == 0, r.stderr
    digest = hashlib.sha256((tmp_path / "rev.csv").read_bytes()).hexdigest()
    assert digest[:16] in r.stdout
    types = audit_types(database_url)
    assert types.count("authz.policy.grant") == 2
    assert "access_review.export" in types and "access_review.attest" in types


def test_revoke_and_reinstate(tmp_path: Path, database_url: str) -> None:
    r = cli(
        ["principals", "revoke", "mallory", "--reason", "stolen laptop", "--actor", "secops"],
        tmp_path,
        database_url,
    )
    assert r.returncode == 0 and "revoked" in r.stdout, r.stderr
    r = cli(
        ["principals", "revoke", "mallory", "--reason", "again", "--actor", "secops"],
        tmp_path,
        database_url,
    )
    assert "already" in r.stdout
    r = cli(
        ["principals", "reinstate", "mallory", "--reason", "new laptop", "--actor", "secops"],
        tmp_path,
        database_url,
    )
    assert "reinstated" in r.stdout
    assert audit_types(database_url).count("authz.principal.revoke") == 1


def test_bad_input_is_one_clear_line(tmp_path: Path, database_url: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("p, clerk, invoices\n")
    cases = [
        ["policy", "import", str(bad), "--actor", "a", "--reason", "r"],
        ["policy", "import", str(tmp_path / "missing.csv"), "--actor", "a", "--reason", "r"],
        ["access-review", "attest", "--reviewer", "x", "--file", str(tmp_path / "none.csv")],
    ]
    for args in cases:
        r = cli(args, tmp_path, database_url)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:"), r.stderr
