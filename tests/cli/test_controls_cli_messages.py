"""``soc2kit controls`` names the ``[tool.soc2kit]`` table in its one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc2kit.cli.main import main


def test_missing_app_error_names_the_config_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no pyproject.toml here, so no [tool.soc2kit] app
    with pytest.raises(SystemExit) as exit_info:
        main(["controls", "--out", str(tmp_path / "docs")])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("error: --app module:attribute is required"), error
    assert "[tool.soc2kit] app" in error, error


def test_help_names_the_config_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit) as exit_info:
        main(["controls", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "(default: [tool.soc2kit] app)" in out, out
    assert "default: [tool.soc2kit] trust_criteria" in out, out
