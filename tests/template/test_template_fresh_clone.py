"""A fresh clone of a baked service passes its own ``make controls-check``, as CI runs it.

CI checks out the repository: the git-ignored ``.env`` written at bake time is
not there, and the runner's environment is not the developer's. The documents
committed at bake time must not depend on either.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.template.bake_helpers import bake, harness_venv, make

GIT = ["git", "-c", "user.name=soc2kit tests", "-c", "user.email=tests@example.invalid"]


def git(cwd: Path, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.mark.xdist_group("baked-make")
def test_controls_check_passes_in_a_fresh_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A developer's own settings must not leak into the committed documents.
    monkeypatch.setenv("SOC2KIT_ALLOWED_HOSTS", "api.example.com")
    monkeypatch.setenv("SOC2KIT_SERVICE_NAME", "not-the-slug")
    project = bake(tmp_path, project_name="Clone Check")
    manifest = project / "docs" / "controls" / "manifest.json"
    assert manifest.is_file()
    text = (project / "docs" / "controls" / "controls.md").read_text()
    assert text.startswith("# Control mapping: clone-check\n")
    assert "api.example.com" not in text

    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "baked")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    assert not (clone / ".env").exists()  # git-ignored, as in CI

    venv = harness_venv(tmp_path)
    result = make(clone, venv, "controls-check")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "is up to date" in result.stdout

    # And the check is not vacuous: a changed policy file is substance.
    policy = clone / "policy" / "policy.csv"
    policy.write_text(policy.read_text() + "p, role:member, *, customers, delete\n")
    stale = make(clone, venv, "controls-check")
    assert stale.returncode != 0
    assert "customers:delete" in stale.stdout
