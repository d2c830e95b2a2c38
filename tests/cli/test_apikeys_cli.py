"""``soc2kit apikeys``: the key printed by ``create`` works against an app; revoke ends it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

import soc2kit
from soc2kit import Principal, require
from soc2kit.cli.apikeys import parse_duration

Client = Callable[..., tuple[TestClient, soc2kit.Kit]]
KEY = re.compile(r"^s2k_([0-9a-f]{24})_[A-Za-z0-9_-]{43}$", re.MULTILINE)


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SOC2KIT_")}
    full_env.update(
        {
            "SOC2KIT_DATA_DIR": str(cwd / ".soc2kit"),  # where make_settings keeps it too
            "SOC2KIT_ENVIRONMENT": "test",
            "COLUMNS": "200",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "soc2kit.cli", "apikeys", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
    kit.policy.grant("billing-writer", "invoices", "write")

    @app.post("/invoices")
    def write(p: Principal = require("invoices", "write")) -> dict[str, str | None]:
        return {"sub": p.subject, "key": p.token_id}


def test_create_list_use_and_revoke(database_url: str, make_client: Client, tmp_path: Path) -> None:
    # database_url first: it must outlive the app (torn down in reverse order).
    created = run(
        [
            "create",
            "--subject",
            "svc-billing",
            "--role",
            "billing-writer",
            "--expires",
            "90d",
            "--description",
            "nightly billing",
            "--database-url",
            database_url,
        ],
        tmp_path,
    )
    assert created.returncode == 0, created.stderr
    match = KEY.search(created.stdout)
    assert match is not None and created.stdout.strip() == match.group(0)  # the key alone
    key, key_id = match.group(0), match.group(1)
    assert key_id in created.stderr and "expires:" in created.stderr

    client, kit = make_client(routes, database_url=database_url)
    r = client.post("/invoices", headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    assert r.json() == {"sub": "svc-billing", "key": key_id}

    listed = run(["list", "--database-url", database_url], tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout and "svc-billing" in listed.stdout
    assert "billing-writer" in listed.stdout
    secret = key[len("s2k_") + 25 :]
    assert secret not in listed.stdout and "hmac-sha256" not in listed.stdout

    revoked = run(
        ["revoke", key_id, "--reason", "rotation", "--database-url", database_url], tmp_path
    )
    assert revoked.returncode == 0, revoked.stderr
    assert client.post("/invoices", headers={"X-API-Key": key}).status_code == 401
    listed = run(["list", "--database-url", database_url], tmp_path)
    assert "rotation" not in listed.stdout and re.search(r"by cli", listed.stdout)

    with kit.engine.connect() as conn:
        events = [
            json.loads(row[0])
            for row in conn.execute(sa.text("SELECT event FROM soc2kit_audit_events"))
        ]
    kinds = {e["event_type"]: e for e in events}
    assert kinds["apikey.created"]["resource_id"] == key_id
    assert kinds["apikey.revoked"]["reason"] == "rotation"
    assert secret not in json.dumps(events)


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [
        (["create", "--subject", "s", "--expires", "366d"], "at most 365d", 2),
        (["create", "--subject", "s", "--expires", "9000h"], "at most 365d", 2),
        (["create", "--subject", "s", "--expires", "90x"], "duration such as 90d", 2),
        (["create", "--subject", "s", "--expires", "0d"], "longer than zero", 2),
        (["create", "--subject", "a\nb", "--expires", "1d"], "printable", 2),
        (["revoke", "0" * 24, "--reason", "x"], "no active API key", 1),
    ],
)
def test_errors_are_one_clear_line(
    tmp_path: Path, sqlite_url: str, args: list[str], needle: str, code: int
) -> None:
    result = run([*args, "--database-url", sqlite_url], tmp_path)
    assert result.returncode == code, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    assert result.stdout == ""


def test_production_without_a_pepper_refuses(tmp_path: Path, sqlite_url: str) -> None:
    result = run(
        ["create", "--subject", "s", "--expires", "1d", "--database-url", sqlite_url],
        tmp_path,
        SOC2KIT_ENVIRONMENT="production",
        SOC2KIT_AUDIT_SIGNING_KEY="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: api_key_pepper is required in production"


@pytest.mark.parametrize(
    ("text", "days"),
    [("90d", 90.0), ("12h", 0.5), ("365d", 365.0), ("30m", 30 / 1440), ("8760h", 365.0)],
)
def test_durations(text: str, days: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(days * 86400)
