"""The template's hooks, unit by unit: option checks, .env, development keys, documents."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.template.bake_helpers import TEMPLATE, load_hook

import soc2kit
from soc2kit.audit.setup import build_signer
from soc2kit.authn.tokens import TokenVerifier
from soc2kit.crypto.setup import build_provider

VALID: dict[str, Any] = {
    "project_name": "Billing API",
    "project_slug": "billing-api",
    "package_name": "billing_api",
    "description": "Invoices for everyone",
    "database": "sqlite",
    "tenancy": "multi",
    "key_provider": "aws-kms",
    "availability": True,
    "confidentiality": False,
    "processing_integrity": False,
    "privacy": True,
}


@pytest.fixture(scope="module")
def pre() -> Any:
    return load_hook("pre_gen_project")


@pytest.fixture(scope="module")
def post() -> Any:
    return load_hook("post_gen_project")


def test_valid_answers_have_no_problem(pre: Any) -> None:
    assert pre.problems(VALID) == []
    # Every value cookiecutter.json offers passes the hook.
    offered = json.loads((TEMPLATE / "cookiecutter.json").read_text("utf-8"))
    for name, choices in pre.CHOICES.items():
        assert tuple(offered[name]) == choices
        for value in choices:
            assert pre.problems({**VALID, name: value}) == []


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"project_slug": "Billing"}, "project_slug 'Billing' must be"),
        ({"project_slug": "b" * 41}, "project_slug"),
        ({"package_name": "billing-api"}, "package_name 'billing-api' must be"),
        ({"package_name": "class"}, "package_name 'class' is reserved"),
        ({"package_name": "soc2kit"}, "package_name 'soc2kit' is reserved"),
        ({"package_name": "asyncio"}, "would shadow the standard library module"),
        ({"project_name": ""}, "project_name must not be empty"),
        ({"project_name": "A {{ x }}"}, "project_name may not contain"),
        ({"description": "line\nbreak"}, "description may not contain"),
        ({"database": "mysql"}, "database 'mysql' is not one of sqlite, postgresql"),
        ({"tenancy": "many"}, "tenancy 'many' is not one of single, multi"),
        ({"key_provider": "vault"}, "key_provider 'vault' is not one of local, aws-kms"),
        ({"privacy": "yes"}, "privacy 'yes' must be a yes/no (boolean) answer"),
        ({"availability": None}, "availability None must be a yes/no"),
    ],
)
def test_each_bad_value_is_named(pre: Any, change: dict[str, Any], fragment: str) -> None:
    problems = pre.problems({**VALID, **change})
    assert len(problems) == 1 and fragment in problems[0], problems


def test_all_problems_are_reported_on_one_line(
    pre: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {**VALID, "database": "mysql", "project_slug": "9"}
    monkeypatch.setattr(pre, "CONTEXT_JSON", json.dumps(bad))
    assert pre.main() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "project_slug '9'" in err and "database 'mysql'" in err
    monkeypatch.setattr(pre, "CONTEXT_JSON", json.dumps(VALID))
    assert pre.main() == 0


def test_unused_files_are_removed(post: Any, tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_tenancy.py").write_text("")
    assert post.remove_unused(tmp_path, {**VALID, "tenancy": "multi"}) == []
    assert (tmp_path / "tests" / "test_tenancy.py").exists()
    assert post.remove_unused(tmp_path, {**VALID, "tenancy": "single"}) == ["tests/test_tenancy.py"]
    assert not (tmp_path / "tests" / "test_tenancy.py").exists()


def test_env_is_private_and_never_overwritten(post: Any, tmp_path: Path) -> None:
    (tmp_path / ".env.example").write_text("SOC2KIT_ENVIRONMENT=development\n")
    env = post.write_env(tmp_path)
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert env.read_text() == post.ENV_HEADER + "SOC2KIT_ENVIRONMENT=development\n"
    env.write_text("SOC2KIT_SERVICE_NAME=mine\n")
    post.write_env(tmp_path)
    assert env.read_text() == "SOC2KIT_SERVICE_NAME=mine\n"


def test_dev_keys_are_the_ones_soc2kit_uses(
    post: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOC2KIT_ENVIRONMENT", "production")  # the hook's arguments win
    names = post.make_dev_keys(tmp_path, "billing-api")
    assert names == ["dev-audit-signing-key.json", "dev-kek.json", "dev-signing-key.json"]
    for name in names:
        assert stat.S_IMODE((tmp_path / ".soc2kit" / name).stat().st_mode) == 0o600
    monkeypatch.delenv("SOC2KIT_ENVIRONMENT")
    # soc2kit finds and uses these files instead of generating others.
    before = {p.name: p.read_bytes() for p in (tmp_path / ".soc2kit").iterdir()}
    settings = soc2kit.Settings(environment="development", data_dir=tmp_path / ".soc2kit")
    assert build_provider(settings).is_development()
    assert build_signer(settings).development
    verifier = TokenVerifier(settings)
    assert verifier.dev_key is not None
    assert verifier.dev_key.kid.startswith("soc2kit-dev-")
    assert {p.name: p.read_bytes() for p in (tmp_path / ".soc2kit").iterdir()} == before


def test_controls_run_on_a_throwaway_configuration(
    post: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = post.controls_env(tmp_path / "scratch", "billing-api")
    assert env == {
        "SOC2KIT_ENVIRONMENT": "development",
        "SOC2KIT_SERVICE_NAME": "billing-api",
        "SOC2KIT_DATA_DIR": str(tmp_path / "scratch" / "data"),
        "SOC2KIT_DATABASE_URL": f"sqlite:///{tmp_path / 'scratch' / 'controls.db'}",
    }


def test_controls_failure_is_reported_not_raised_and_the_environment_restored(
    post: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOC2KIT_ENVIRONMENT", "production")
    before = dict(os.environ)
    path_before = list(sys.path)
    # No package to import: generation fails, the hook says why in one line.
    reason = post.generate_controls(tmp_path, "no_such_package", "svc")
    assert reason is not None and "no_such_package" in reason
    assert dict(os.environ) == before and sys.path == path_before
    assert not (tmp_path / "docs").exists()


def test_without_soc2kit_the_bake_still_succeeds(
    post: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / ".env.example").write_text("SOC2KIT_ENVIRONMENT=development\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(post, "CONTEXT_JSON", json.dumps({**VALID, "tenancy": "single"}))
    monkeypatch.setattr(post, "soc2kit_available", lambda: False)
    assert post.main() == 0
    out = capsys.readouterr().out
    assert "soc2kit is not installed in this Python" in out and "`make controls`" in out
    assert (tmp_path / ".env").exists() and not (tmp_path / ".soc2kit").exists()
