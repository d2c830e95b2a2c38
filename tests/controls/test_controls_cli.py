"""The ``controls`` and ``evidence`` commands: attachments, [tool.soc2kit], and bad input.

Commands run through ``soc2kit.cli.main.main`` (the console script's entry
point: one error line, no traceback) in-process, each with a freshly imported
app module; one case also runs as a real ``python -m soc2kit`` process.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.controls.controls_helpers import (
    assert_complete,
    build_app,
    cli_env,
    evidence,
    generate,
    md_control_statuses,
    run_cli,
    shown,
)

import soc2kit
from soc2kit.cli.main import main

APP_SOURCE = """
from fastapi import FastAPI
import soc2kit

settings = soc2kit.Settings()
app = FastAPI(**settings.fastapi_docs_kwargs())
kit = soc2kit.install(app, settings)
app.include_router(kit.health_router())


@app.get("/ledger", dependencies=[soc2kit.require("ledger", "read")])
def ledger() -> dict[str, str]:
    return {}
"""

# What `pytest --junitxml` writes (pytest 8, default junit_family xunit2).
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="{errors}" failures="{failures}" \
skipped="1" tests="{tests}" time="0.412" timestamp="2026-11-02T10:00:00.000000+00:00" \
hostname="ci-runner"><testcase classname="tests.test_ledger" name="test_read" time="0.010" />\
<testcase classname="tests.test_ledger" name="test_denied" time="0.011" />\
{failed}<testcase classname="tests.test_ledger" name="test_later" time="0.000">\
<skipped type="pytest.skip" message="not yet">tests/test_ledger.py:30: not yet</skipped>\
</testcase></testsuite></testsuites>
"""
FAILED_CASE = (
    '<testcase classname="tests.test_ledger" name="test_export" time="0.020">'
    '<failure message="assert 403 == 200">def test_export(): ...</failure></testcase>'
)

# What `pip-audit --format json` writes.
PIP_AUDIT_VULNERABLE = {
    "dependencies": [
        {"name": "fastapi", "version": "0.115.0", "vulns": []},
        {
            "name": "jinja2",
            "version": "3.1.2",
            "vulns": [
                {
                    "id": "GHSA-h5c8-rqwp-cp95",
                    "fix_versions": ["3.1.3"],
                    "aliases": ["CVE-2024-22195"],
                    "description": "xmlattr filter accepts keys containing spaces",
                }
            ],
        },
        {"name": "soc2kit", "skip_reason": "Dependency not found on PyPI"},
    ],
    "fixes": [],
}
PIP_AUDIT_CLEAN = {
    "dependencies": [{"name": "fastapi", "version": "0.115.6", "vulns": []}],
    "fixes": [],
}


def write_junit(path: Path, *, failed: bool) -> Path:
    path.write_text(
        JUNIT.format(
            errors=0,
            failures=1 if failed else 0,
            tests=4 if failed else 3,
            failed=FAILED_CASE if failed else "",
        ),
        "utf-8",
    )
    return path


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), "utf-8")
    return path


# --junit and --pip-audit ----------------------------------------------------------------


def test_attached_results_become_evidence_and_absent_ones_are_not_assessed(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    app, _ = build_app(ctl_settings())
    absent, _ = generate(app, tmp_path / "absent")
    for item in ("tests", "dependency-scan"):
        assert evidence(tmp_path / "absent", item)["result"] == "not-collected"
    md = (tmp_path / "absent" / "controls.md").read_text("utf-8")
    statuses = md_control_statuses(md)
    assert statuses["SK-CM-02"] == statuses["SK-VM-01"] == "not assessed (no evidence attached)"
    cc68 = next(r for r in absent.criteria if r.criterion.id == "CC6.8")
    assert cc68.status == "organization-provided"  # only SK-VM-01 maps to it

    app, _ = build_app(ctl_settings())
    findings, _ = generate(
        app,
        tmp_path / "findings",
        junit=write_junit(tmp_path / "junit-failed.xml", failed=True),
        pip_audit=write_json(tmp_path / "audit-vulnerable.json", PIP_AUDIT_VULNERABLE),
    )
    tests = evidence(tmp_path / "findings", "tests")
    assert tests["result"] == "fail"
    assert {k: tests["observed"][k] for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": 4,
        "failures": 1,
        "errors": 0,
        "skipped": 1,
    }
    scan = evidence(tmp_path / "findings", "dependency-scan")
    assert scan["result"] == "fail"
    assert scan["observed"]["dependencies"] == 3
    assert scan["observed"]["vulnerabilities"] == [
        {
            "package": "jinja2",
            "version": "3.1.2",
            "id": "GHSA-h5c8-rqwp-cp95",
            "fix_versions": ["3.1.3"],
        }
    ]
    md = (tmp_path / "findings" / "controls.md").read_text("utf-8")
    statuses = md_control_statuses(md)
    assert statuses["SK-CM-02"] == statuses["SK-VM-01"] == "implemented, with findings"
    assert "| failures | 1 |" in md and "| jinja2 3.1.2 | GHSA-h5c8-rqwp-cp95 |" in md
    cc68 = next(r for r in findings.criteria if r.criterion.id == "CC6.8")
    assert cc68.status == "shared" and [c.control.id for c in cc68.controls] == ["SK-VM-01"]

    app, _ = build_app(ctl_settings())
    generate(
        app,
        tmp_path / "clean",
        junit=write_junit(tmp_path / "junit-passed.xml", failed=False),
        pip_audit=write_json(tmp_path / "audit-clean.json", PIP_AUDIT_CLEAN),
    )
    assert evidence(tmp_path / "clean", "tests")["result"] == "pass"
    assert evidence(tmp_path / "clean", "tests")["observed"]["failures"] == 0
    assert evidence(tmp_path / "clean", "dependency-scan")["result"] == "pass"
    assert evidence(tmp_path / "clean", "dependency-scan")["observed"]["vulnerabilities"] == []
    statuses = md_control_statuses((tmp_path / "clean" / "controls.md").read_text("utf-8"))
    assert statuses["SK-CM-02"] == statuses["SK-VM-01"] == "implemented"


# running the command in-process ---------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """A project folder as the working directory; ``project(source)`` adds an app module."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, value in cli_env(tmp_path, f"sqlite:///{tmp_path / 'app.db'}").items():
        if name.startswith("SOC2KIT_"):
            monkeypatch.setenv(name, value)

    def add(source: str = APP_SOURCE) -> str:
        name = f"ctl_cli_app_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(source, "utf-8")
        return f"{name}:app"

    return add


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def test_tool_soc2kit_table_supplies_app_and_criteria(
    project: Callable[[str], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = project(APP_SOURCE)
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "ledger"\n\n[tool.soc2kit]\napp = "{ref}"\n'
        'trust_criteria = ["availability", "privacy"]\n',
        "utf-8",
    )
    junit = write_junit(tmp_path / "junit.xml", failed=True)
    scan = write_json(tmp_path / "pip-audit.json", PIP_AUDIT_VULNERABLE)
    code, out, err = run(capsys, "controls", "--out", "docs", "--junit", junit, "--pip-audit", scan)
    assert code == 0, (out, err)
    assert "wrote 20 files to docs" in out
    assert "evidence with findings: tests, dependency-scan" in out
    assert_complete(tmp_path / "docs", ("availability", "privacy"))
    assert json.loads((tmp_path / "docs" / "manifest.json").read_text("utf-8"))["app"] == ref
    assert evidence(tmp_path / "docs", "tests")["result"] == "fail"
    assert evidence(tmp_path / "docs", "dependency-scan")["result"] == "fail"

    # Flags win over the table.
    other = project(APP_SOURCE)
    code, out, err = run(
        capsys, "controls", "--app", other, "--criteria", "confidentiality", "--out", "docs2"
    )
    assert code == 0, (out, err)
    assert_complete(tmp_path / "docs2", ("confidentiality",))
    assert json.loads((tmp_path / "docs2" / "manifest.json").read_text("utf-8"))["app"] == other
    assert evidence(tmp_path / "docs2", "tests")["result"] == "not-collected"


# bad input ------------------------------------------------------------------------------


Builder = Callable[[Callable[[str], str], Path], list[str]]


def _unknown_criteria(project: Callable[[str], str], tmp: Path) -> list[str]:
    ref = project(APP_SOURCE)
    return ["controls", "--app", ref, "--out", "docs", "--criteria", "availability,integrity"]


def _no_app(project: Callable[[str], str], tmp: Path) -> list[str]:
    return ["controls", "--out", "docs"]  # and no pyproject.toml in the folder


def _table_without_app(project: Callable[[str], str], tmp: Path) -> list[str]:
    (tmp / "pyproject.toml").write_text(
        '[project]\nname = "ledger"\n\n[tool.soc2kit]\ntrust_criteria = ["privacy"]\n', "utf-8"
    )
    return ["controls", "--out", "docs"]


def _not_importable(project: Callable[[str], str], tmp: Path) -> list[str]:
    return ["controls", "--app", "ctl_no_such_module:app", "--out", "docs"]


def _without_install(project: Callable[[str], str], tmp: Path) -> list[str]:
    ref = project("from fastapi import FastAPI\napp = FastAPI()\n")
    return ["controls", "--app", ref, "--out", "docs"]


def _missing_junit(project: Callable[[str], str], tmp: Path) -> list[str]:
    ref = project(APP_SOURCE)
    return ["controls", "--app", ref, "--out", "docs", "--junit", str(tmp / "junit.xml")]


def _check_missing_folder(project: Callable[[str], str], tmp: Path) -> list[str]:
    return ["controls", "--app", project(APP_SOURCE), "--out", "docs", "--check"]


def _until_before_since(project: Callable[[str], str], tmp: Path) -> list[str]:
    return ["evidence", "--since", "2026-03-01", "--until", "2026-02-01", "--out", "period"]


def _non_empty_out(project: Callable[[str], str], tmp: Path) -> list[str]:
    (tmp / "period").mkdir()
    (tmp / "period" / "earlier-export.csv").write_text("seq\n", "utf-8")
    return ["evidence", "--since", "2026-01-01", "--until", "2026-02-01", "--out", "period"]


BAD_INPUT: dict[str, tuple[Builder, str]] = {
    "unknown-criteria": (
        _unknown_criteria,
        "error: unknown trust category 'integrity' (one of security, availability, "
        "confidentiality, processing-integrity, privacy)",
    ),
    "no-app-no-table": (_no_app, "error: --app module:attribute is required (or "),
    "no-app-in-table": (_table_without_app, "error: --app module:attribute is required (or "),
    "not-importable": (
        _not_importable,
        "error: cannot import 'ctl_no_such_module': No module named 'ctl_no_such_module'",
    ),
    "app-without-install": (_without_install, ":app does not call soc2kit.install()"),
    "missing-junit": (_missing_junit, "junit.xml does not exist"),
    "check-missing-folder": (
        _check_missing_folder,
        "error: docs does not exist: generate it first (without --check)",
    ),
    "until-before-since": (_until_before_since, "error: --until must be after --since"),
    "evidence-non-empty-out": (_non_empty_out, "error: period is not an empty folder"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gives_one_clear_line(
    case: str,
    project: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    build, message = BAD_INPUT[case]
    argv = build(project, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(capsys, *argv)
    assert code == 1, (out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err and "unexpected" not in err
    # Nothing half-written: no output folder appeared.
    after = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("__pycache__"))
    assert [n for n in after if n not in before] in ([], [".soc2kit"], [".soc2kit", "app.db"]), (
        after
    )


def test_bad_input_from_the_console_script_has_no_traceback(tmp_path: Path) -> None:
    """The same failure through a real process: one line on stderr, exit 1."""
    (tmp_path / "ctl_bare.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    result = run_cli("controls", "--app", "ctl_bare:app", "--out", "docs", cwd=tmp_path, env=env)
    assert result.returncode == 1, shown(result)
    assert result.stdout == ""
    assert result.stderr == "error: ctl_bare:app does not call soc2kit.install()\n", shown(result)
    assert not (tmp_path / "docs").exists()


@pytest.mark.parametrize(
    ("pyproject", "expected"),
    [
        ("", "error: --app module:attribute is required (or [tool.soc2kit] app)"),
        (
            '[tool.soc2kit]\napp = "x:app"\ntrust_criteria = "privacy"\n',
            "error: [tool.soc2kit] trust_criteria must be a list of names",
        ),
    ],
    ids=["missing-app", "criteria-not-a-list"],
)
def test_errors_name_the_tool_soc2kit_table(
    pyproject: str,
    expected: str,
    project: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if pyproject:
        (tmp_path / "pyproject.toml").write_text(pyproject, "utf-8")
    code, _, err = run(capsys, "controls", "--out", "docs")
    assert code == 1
    assert err.strip() == expected


@pytest.mark.parametrize(
    ("option", "content"),
    [("--junit", "<testsuites><testsuite"), ("--pip-audit", "{not json")],
    ids=["junit", "pip-audit"],
)
def test_a_malformed_attachment_is_named(
    option: str,
    content: str,
    project: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    attachment = tmp_path / "attached-results"
    attachment.write_text(content, "utf-8")
    code, _, err = run(
        capsys, "controls", "--app", project(APP_SOURCE), "--out", "docs", option, attachment
    )
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "attached-results" in err and "unexpected" not in err


def test_out_naming_a_file_is_refused_with_its_name(
    project: Callable[[str], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "controls-output").write_text("not a folder\n", "utf-8")
    code, _, err = run(capsys, "controls", "--app", project(APP_SOURCE), "--out", "controls-output")
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "controls-output" in err and "unexpected" not in err


def test_a_pip_audit_list_of_dependencies_is_read(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    scan = write_json(tmp_path / "pip-audit.json", PIP_AUDIT_VULNERABLE["dependencies"])
    app, _ = build_app(ctl_settings())
    generate(app, tmp_path / "out", pip_audit=scan)
    found = evidence(tmp_path / "out", "dependency-scan")
    assert found["result"] == "fail"
    assert [v["id"] for v in found["observed"]["vulnerabilities"]] == ["GHSA-h5c8-rqwp-cp95"]
