"""The soc2kit command line: exit codes, one-line errors, the production check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

import soc2kit

SAFE_ENV = {
    "SOC2KIT_ENVIRONMENT": "production",
    "SOC2KIT_OIDC_ISSUER": "https://id.example.com/",
    "SOC2KIT_OIDC_AUDIENCE": "api://invoices",
    "SOC2KIT_JWKS": json.dumps(
        {
            "keys": [
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "kid": "k1",
                    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                }
            ]
        }
    ),
    "SOC2KIT_ALLOWED_HOSTS": "api.example.com",
    "SOC2KIT_DATABASE_URL": "postgresql://app@127.0.0.1:1/app",
    "SOC2KIT_API_KEY_PEPPER": "pepper-for-tests-0123456789abcdef",
    "SOC2KIT_ENCRYPTION_KEK": "kek-test-1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
    "SOC2KIT_AUDIT_SIGNING_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "SOC2KIT_AUDIT_ANCHOR_DIR": "/var/lib/app/audit-anchors",
}

APP_MODULE = """
import soc2kit
from fastapi import FastAPI
settings = soc2kit.Settings()
app = FastAPI(**settings.fastapi_docs_kwargs())
kit = soc2kit.install(app, settings)
"""


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SOC2KIT_")}
    full_env.update({"SOC2KIT_DATA_DIR": str(cwd / ".soc2kit"), "COLUMNS": "200"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "soc2kit.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version_and_help(tmp_path: Path) -> None:
    assert run(["version"], tmp_path).stdout.strip() == soc2kit.__version__
    help_text = run(["--help"], tmp_path).stdout
    for command in ("version", "demo", "check", "db", "dev-token"):
        assert command in help_text


def test_check_passes_a_safe_production_app(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(APP_MODULE)
    result = run(["check", "--app", "svc:app"], tmp_path, SAFE_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems" in result.stdout


def test_check_lists_every_problem_of_an_insecure_app(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(APP_MODULE)
    env = {
        **SAFE_ENV,
        "SOC2KIT_CORS_ORIGINS": "*",
        "SOC2KIT_CORS_ALLOW_CREDENTIALS": "true",
        "SOC2KIT_DATABASE_URL": "sqlite:///prod.db",
        "SOC2KIT_ALLOWED_HOSTS": "*",
    }
    result = run(["check", "--app", "svc:app"], tmp_path, env)
    assert result.returncode == 1
    for needle in ("credentials", "SQLite", "allowed_hosts", "3 problem"):
        assert needle in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_check_evaluates_a_development_app_as_if_production(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(APP_MODULE)
    result = run(["check", "--app", "svc:app"], tmp_path, {"SOC2KIT_ENVIRONMENT": "development"})
    assert result.returncode == 1
    assert "oidc_issuer" in result.stdout and "development" in result.stdout


def test_check_flags_an_app_without_soc2kit(tmp_path: Path) -> None:
    (tmp_path / "bare.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    result = run(["check", "--app", "bare:app"], tmp_path, SAFE_ENV)
    assert result.returncode == 1 and "install" in result.stdout


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    cases = [
        (["check", "--app", "missing_module:app"], {}),
        (["check", "--app", "no-colon"], {}),
        (["dev-token", "--sub", "a"], {"SOC2KIT_RATE_LIMIT": "fast"}),
        (["dev-token", "--sub", "a"], {"SOC2KIT_ENVIRONMENT": "production"}),
        (["db", "upgrade", "--database-url", "postgresql://u:pw-secret@127.0.0.1:1/x"], {}),
    ]
    for args, env in cases:
        result = run(args, tmp_path, env)
        assert result.returncode != 0, args
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, result.stderr)
        assert "Traceback" not in result.stderr and "pw-secret" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run(["--debug", "check", "--app", "missing_module:app"], tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_db_upgrade_creates_the_tables(tmp_path: Path, database_url: str) -> None:
    result = run(["db", "upgrade", "--database-url", database_url], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "0004" in result.stdout
    engine = sa.create_engine(soc2kit.db.normalize_url(database_url))
    try:
        names = sa.inspect(engine).get_table_names()
        wanted = {"soc2kit_audit_events", "soc2kit_data_keys", "soc2kit_encryption_jobs"}
        assert wanted <= set(names)
    finally:
        engine.dispose()


def test_dev_token_verifies_with_the_dev_keyring(tmp_path: Path) -> None:
    result = run(["dev-token", "--sub", "alice", "--role", "clerk", "--role", "auditor"], tmp_path)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    from soc2kit.authn.tokens import TokenVerifier

    verifier = TokenVerifier(
        soc2kit.Settings(environment="development", data_dir=tmp_path / ".soc2kit")
    )
    principal = verifier.verify(token)
    assert principal.subject == "alice" and principal.roles == {"clerk", "auditor"}
