"""``soc2kit new``: bakes the template into a folder; bad options are one line and exit 2."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from soc2kit.cli.main import main
from soc2kit.cli.new import find_template, parse_options


def run(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(["new", *args])
    code = exit_info.value.code
    return code if isinstance(code, int) else 1


def one_error_line(capfd: pytest.CaptureFixture[str]) -> str:
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_bakes_into_the_named_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = run("svc/orders-api", "--no-input", "-o", "database=postgresql", "--option", "privacy=y")
    assert code == 0, capfd.readouterr().err
    project = tmp_path / "svc" / "orders-api"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))
    # The folder name became the project name; the options were applied.
    assert pyproject["project"]["name"] == "orders-api"
    assert (project / "orders_api" / "app.py").is_file()
    assert "soc2kit[postgres]>=0.1" in pyproject["project"]["dependencies"]
    assert "privacy" in pyproject["tool"]["soc2kit"]["trust_criteria"]
    assert (project / ".env").is_file() and (project / ".soc2kit").is_dir()
    assert sorted(p.name for p in (tmp_path / "svc").iterdir()) == ["orders-api"]  # no staging
    assert f"created {Path('svc/orders-api')}" in capfd.readouterr().out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-o", "colour=blue"], "error: unknown option 'colour' (options: availability,"),
        (["-o", "_template=x"], "error: unknown option '_template'"),
        (["-o", "database"], "error: --option expects key=value, got 'database'"),
        (["-o", "database=mysql"], "mysql provided for choice variable database"),
        (["-o", "privacy=maybe"], "maybe provided for variable privacy could not be converted"),
        (["-o", "project_slug=Bad Slug"], "error: project_slug 'Bad Slug' must be"),
        (["-o", "package_name=json"], "package_name 'json' would shadow the standard library"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("svc", "--no-input", *options) == 2
    assert message in one_error_line(capfd)
    assert list(tmp_path.iterdir()) == []  # nothing created, no staging left


def test_an_existing_folder_is_kept_unless_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "notes.txt").write_text("mine")
    assert run("svc", "--no-input") == 2
    assert "svc exists and is not empty (use --overwrite" in one_error_line(capfd)
    assert (tmp_path / "svc" / "notes.txt").read_text() == "mine"

    assert run("svc", "--no-input", "--overwrite", "-o", "project_name=Replaced") == 0
    assert not (tmp_path / "svc" / "notes.txt").exists()
    assert (tmp_path / "svc" / "replaced" / "app.py").is_file()


def test_the_current_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(".", "--no-input", "--overwrite") == 2
    assert "is the current folder or holds it" in one_error_line(capfd)


def test_parse_options_keeps_equals_signs_in_values() -> None:
    assert parse_options(["description=a=b", "database=sqlite", "database=postgresql"]) == {
        "description": "a=b",
        "database": "postgresql",
    }


def test_locator_prefers_the_installed_copy(tmp_path: Path) -> None:
    packaged, checkout = tmp_path / "site" / "_template", tmp_path / "checkout"
    for root in (packaged, checkout):
        (root / "template").mkdir(parents=True)
        (root / "template" / "cookiecutter.json").write_text("{}")
    assert find_template(packaged=packaged, checkout=checkout) == packaged
    assert find_template(packaged=tmp_path / "missing", checkout=checkout) == checkout
    # In this editable install there is no packaged copy: the repository's is used.
    assert (find_template() / "template" / "cookiecutter.json").is_file()
