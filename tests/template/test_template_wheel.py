"""The template ships inside the wheel, and ``soc2kit new`` bakes from that installed copy.

The wheel is built offline from this checkout (``pip wheel --no-build-isolation
--no-index``); its ``soc2kit`` package is then imported from the unpacked
wheel, where no repository is around to fall back on.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from tests.template.bake_helpers import REPO, TEMPLATE

PREFIX = "soc2kit/_template/"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    result = subprocess.run(
        [*command, "--no-index", "--quiet", "--wheel-dir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("soc2kit-*.whl")
    return built


@pytest.fixture(scope="module")
def unpacked(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(root)
    return root


def test_wheel_holds_the_whole_template(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n[len(PREFIX) :] for n in archive.namelist() if n.startswith(PREFIX)}
    expected = {"cookiecutter.json"} | {
        str(p.relative_to(REPO))
        for p in TEMPLATE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped == expected
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in shipped)


def test_new_bakes_from_the_installed_copy(unpacked: Path, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SOC2KIT_")},
        "PYTHONPATH": str(unpacked),  # before the editable install on sys.path
    }
    # One interpreter: where the template was found, then `soc2kit new` itself.
    script = (
        # flush: the hooks write to the same stdout, and a pipe buffers this print.
        "import sys; from soc2kit.cli.new import find_template; "
        "print(find_template(), flush=True); "
        "from soc2kit.cli.main import main; main(sys.argv[1:])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "new", "shipped", "--no-input", "-o", "tenancy=multi"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(result.stdout.splitlines()[0]) == unpacked / "soc2kit" / "_template"
    assert "Traceback" not in result.stderr
    project = tmp_path / "shipped"
    assert (project / "shipped" / "app.py").is_file()
    assert (project / "tests" / "test_tenancy.py").is_file()
    if importlib.util.find_spec("soc2kit.cli.controls") is not None:
        # The hook ran `python -m soc2kit controls` against the wheel's soc2kit.
        assert (project / "docs" / "controls" / "controls.md").is_file()
