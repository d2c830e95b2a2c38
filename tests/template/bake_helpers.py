"""Helpers for the template self-test: bake, load a hook, run a baked project's make.

Bakes use a private cookiecutter config (no ~/.cookiecutterrc defaults, no
replay files in $HOME). A baked project's ``make`` runs against a virtualenv
that reaches this interpreter's packages through a ``.pth`` file, with
``NO_INSTALL=1``: nothing is installed, nothing is fetched from the network.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

from cookiecutter.main import cookiecutter

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template"
HOOKS = TEMPLATE / "hooks"

# Cookiecutter syntax left in a baked file; GitHub's ${{ ... }} expressions are not.
UNRENDERED = re.compile(r"(?<!\$)\{\{|\{%|\{#|cookiecutter\.")


def cookiecutter_config(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "cookiecutter-config.yaml"
    config.write_text(f"replay_dir: '{directory / 'replay'}'\n", "utf-8")
    return config


def bake(directory: Path, template: Path = REPO, **options: Any) -> Path:
    """Bake ``template`` (the repository: its nested config) with ``options``; the project."""
    out = cookiecutter(
        str(template),
        no_input=True,
        extra_context=options,
        output_dir=str(directory / "out"),
        config_file=str(cookiecutter_config(directory)),
    )
    return Path(out)


def load_hook(name: str) -> types.ModuleType:
    """A hook as a module, unrendered (it is valid Python), without bytecode in template/."""
    path = HOOKS / f"{name}.py"
    module = types.ModuleType(f"template_hook_{name}")
    module.__file__ = str(path)
    exec(compile(path.read_text("utf-8"), str(path), "exec"), module.__dict__)
    return module


def unrendered(project: Path) -> list[str]:
    """``path:line`` of every baked line that still holds cookiecutter syntax."""
    found = []
    for path in sorted(p for p in project.rglob("*") if p.is_file()):
        if ".soc2kit" in path.parts:
            continue  # keys written by the hook
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if UNRENDERED.search(line):
                found.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    return found


def harness_venv(root: Path) -> Path:
    """A virtualenv without pip that sees this interpreter's packages (soc2kit included).

    ``site.addsitedir`` (not a plain path line) so the ``.pth`` files there,
    such as soc2kit's editable install, are processed too.
    """
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    lines = [f"import site; site.addsitedir({path!r})" for path in sorted(ours)]
    (target / "soc2kit_harness.pth").write_text("\n".join(lines) + "\n", "utf-8")
    return venv


def make(
    project: Path, venv: Path, *targets: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the baked project's ``make`` on the prepared ``venv`` (NO_INSTALL=1)."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        # Nothing of this process's make, virtualenv or soc2kit configuration leaks in.
        if not k.startswith(("MAKE", "MFLAGS", "SOC2KIT_", "VIRTUAL_ENV", "PYTHON"))
    }
    return subprocess.run(
        ["make", *targets, f"VENV={venv}", "NO_INSTALL=1"],
        cwd=project,
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
