"""The service template bakes across a pairwise matrix of its options, clean and complete.

Every option value appears at least once and every pair of values of two
options appears together in some bake (checked below, not claimed). Each bake
must leave no template syntax behind, pass ruff (with the bandit ``S`` rules)
and bandit under its own configuration, and hold what its options ask for.
Invalid options fail the bake with one clear message, before any file stays.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter
from tests.controls.controls_helpers import (
    assert_complete,
    assert_no_claims,
    assert_oscal,
    assert_self_contained,
)
from tests.template.bake_helpers import REPO, bake, cookiecutter_config, unrendered

FACTORS: dict[str, tuple[Any, ...]] = {
    "database": ("sqlite", "postgresql"),
    "tenancy": ("single", "multi"),
    "key_provider": ("local", "aws-kms"),
    "availability": (False, True),
    "confidentiality": (False, True),
    "processing_integrity": (False, True),
    "privacy": (False, True),
}


def combo(name: str, *values: Any, **names: str) -> dict[str, Any]:
    return {"project_name": name, **dict(zip(FACTORS, values, strict=True)), **names}


# Columns are distinct 3-of-5 subsets over rows 2-6 (row 1 all-first-values):
# any two such columns meet in every pair of values, so six bakes are pairwise.
MATRIX = [
    combo("Billing API", "sqlite", "single", "local", False, False, False, False),
    combo(
        "Accounts Payable Reconciliation Service",  # long names: line lengths
        *("postgresql", "multi", "aws-kms", True, True, True, False),
    ),
    combo("ledger", "postgresql", "multi", "aws-kms", False, False, False, True),
    combo(
        "HR Portal",
        *("postgresql", "single", "local", True, True, False, True),
        project_slug="hr-portal",
        package_name="hr_portal_api",
    ),
    combo("Data-Export Hub 2", "sqlite", "multi", "local", True, False, True, True),
    combo("Zeta", "sqlite", "single", "aws-kms", False, True, True, False),
]
CRITERIA_NAMES = {
    "availability": "availability",
    "confidentiality": "confidentiality",
    "processing_integrity": "processing-integrity",
    "privacy": "privacy",
}
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")
CONTROLS_AVAILABLE = importlib.util.find_spec("soc2kit.cli.controls") is not None


def test_matrix_is_pairwise() -> None:
    for (a, values_a), (b, values_b) in itertools.combinations(FACTORS.items(), 2):
        seen = {(row[a], row[b]) for row in MATRIX}
        assert seen == set(itertools.product(values_a, values_b)), (a, b)


def tool(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=project, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("options", MATRIX, ids=[row["project_name"] for row in MATRIX])
def test_bake(tmp_path: Path, options: dict[str, Any]) -> None:
    project = bake(tmp_path, **options)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))
    package = project / pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"][0]
    if "package_name" in options:
        assert (project.name, package.name) == (options["project_slug"], options["package_name"])

    assert unrendered(project) == []

    # What the options ask for.
    extras = (
        {"postgresql": "postgres"}.get(options["database"]),
        {"aws-kms": "aws"}.get(options["key_provider"]),
    )
    soc2kit_dep = next(d for d in pyproject["project"]["dependencies"] if d.startswith("soc2kit"))
    wanted = ",".join(e for e in extras if e)
    assert soc2kit_dep == (f"soc2kit[{wanted}]>=0.1" if wanted else "soc2kit>=0.1")
    assert pyproject["tool"]["soc2kit"] == {
        "app": f"{package.name}.app:app",
        "trust_criteria": [name for key, name in CRITERIA_NAMES.items() if options[key]],
    }
    assert "S" in pyproject["tool"]["ruff"]["lint"]["select"]
    multi = options["tenancy"] == "multi"
    assert (project / "tests" / "test_tenancy.py").exists() == multi
    assert ("tenant_id" in (package / "models.py").read_text("utf-8")) == multi
    production = (project / "deploy" / "production.env.example").read_text("utf-8")
    kms = options["key_provider"] == "aws-kms"
    assert ("SOC2KIT_ENCRYPTION_KMS_KEY_ID=" in production) == kms
    assert ("SOC2KIT_ENCRYPTION_KEK=CHANGE-ME" in production) == (not kms)

    check_ci(project, package.name, postgres=options["database"] == "postgresql")
    check_hook_outputs(project)
    check_container(project)

    checks = [
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        ("bandit", "-q", "-c", "pyproject.toml", "-r", package.name, "scripts"),
    ]
    for args in checks:
        result = tool(project, *args)
        assert result.returncode == 0, f"{args[0]}: {result.stdout}{result.stderr}"


def check_ci(project: Path, package: str, *, postgres: bool) -> None:
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text("utf-8"))
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    uses = [step["uses"] for step in steps if "uses" in step]
    assert uses and all(SHA_PIN.match(u) for u in uses), uses
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
    runs = [step.get("run", "") for step in steps]
    targets = ["lint", "typecheck", "bandit", "audit-deps", "pytest", "routes"]
    for target in [*targets, "check-production", "controls-check"]:
        assert f"make {target}" in runs, target
    names = " ".join(step.get("name", "") for step in steps)
    for command in ("soc2kit routes", "soc2kit check", "soc2kit controls"):
        assert f"{command} --app {package}.app:app" in names
    pytest_step = next(s for s in steps if s.get("run") == "make pytest")
    assert ("postgres" in job.get("services", {})) == postgres
    assert ("TEST_DATABASE_URL" in pytest_step.get("env", {})) == postgres
    makefile = (project / "Makefile").read_text("utf-8")
    assert "soc2kit routes --app $(APP)" in makefile and "APP := $(PACKAGE).app:app" in makefile
    hooks = yaml.safe_load((project / ".pre-commit-config.yaml").read_text("utf-8"))
    pinned = [repo for repo in hooks["repos"] if repo["repo"] != "local"]
    assert pinned and all(re.fullmatch(r"[0-9a-f]{40}", repo["rev"]) for repo in pinned)
    assert any(h["id"] == "detect-private-key" for repo in pinned for h in repo["hooks"])


def check_hook_outputs(project: Path) -> None:
    env = project / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert env.read_text("utf-8").endswith((project / ".env.example").read_text("utf-8"))
    ignored = (project / ".gitignore").read_text("utf-8").splitlines()
    assert {".env", ".soc2kit/"} <= set(ignored)
    keys = sorted((project / ".soc2kit").iterdir())
    assert [k.name for k in keys] == [
        "dev-audit-signing-key.json",
        "dev-kek.json",
        "dev-signing-key.json",
    ]
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    if CONTROLS_AVAILABLE:
        controls = project / "docs" / "controls"
        for name in ("controls.md", "controls.html", "component-definition.json", "manifest.json"):
            assert (controls / name).is_file(), name
        assert (controls / "evidence").is_dir()
        assert not list(project.rglob("*.db"))  # generated on a throwaway database
        # The documents themselves: every criterion with its scope, valid OSCAL, no claims.
        config = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))
        assert_complete(controls, tuple(config["tool"]["soc2kit"]["trust_criteria"]))
        assert_oscal(controls)
        assert_no_claims(controls)
        assert_self_contained((controls / "controls.html").read_text("utf-8"))


def check_container(project: Path) -> None:
    dockerfile = (project / "Dockerfile").read_text("utf-8")
    assert dockerfile.count("\nFROM ") == 2  # build and runtime stages
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "\nHEALTHCHECK " in dockerfile


# Negative cases --------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["Bad Slug", "9lives", "x", "trailing-", "double--dash"])
def test_invalid_slug_fails_the_bake(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], slug: str
) -> None:
    with pytest.raises(FailedHookException):
        bake(tmp_path, project_slug=slug)
    message = capfd.readouterr().err.strip().splitlines()
    assert message == [message[0]] and message[0].startswith(f"error: project_slug {slug!r}")
    assert not any((tmp_path / "out").iterdir())  # nothing left behind


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"package_name": "import"}, "package_name 'import' is reserved"),
        ({"package_name": "json"}, "would shadow the standard library"),
        ({"description": 'Say "hi"'}, "description may not contain quotes"),
        ({"project_name": "x" * 81, "project_slug": "long"}, "project_name is longer than 80"),
    ],
)
def test_the_hook_refuses_unsafe_values(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], options: dict[str, str], expected: str
) -> None:
    with pytest.raises(FailedHookException):
        bake(tmp_path, **options)
    assert expected in capfd.readouterr().err


def test_cookiecutter_refuses_an_unknown_choice(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"mysql provided for choice variable database"):
        bake(tmp_path, database="mysql")


def test_the_hook_checks_values_cookiecutter_lets_through(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # A replay file bypasses cookiecutter's choice checks; the pre-generation hook does not.
    template = REPO / "template"
    answers = {
        "project_name": "Replayed",
        "project_slug": "replayed",
        "package_name": "replayed",
        "description": "From a replay file",
        "database": "mysql",
        "tenancy": "single",
        "key_provider": "local",
        "availability": "yes",
        "confidentiality": True,
        "processing_integrity": False,
        "privacy": False,
    }
    replay = tmp_path / "replayed.json"
    replay.write_text(json.dumps({"cookiecutter": answers}), "utf-8")
    with pytest.raises(FailedHookException):
        cookiecutter(
            str(template),
            replay=str(replay),
            output_dir=str(tmp_path / "out"),
            config_file=str(cookiecutter_config(tmp_path)),
        )
    message = capfd.readouterr().err
    assert "database 'mysql' is not one of sqlite, postgresql" in message
    assert "availability 'yes' must be a yes/no (boolean) answer" in message
    assert not (tmp_path / "out" / "replayed").exists()
