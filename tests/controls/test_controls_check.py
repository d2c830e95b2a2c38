"""``soc2kit controls --check``: CI fails when the committed documents drift from the code.

Generations of "the same code" at different times run the real CLI in
subprocesses (one lifespan per app object, mappers global to a process).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from tests.controls.controls_helpers import (
    build_app,
    cli_env,
    generate,
    run_cli,
    seed_history,
    shown,
)

import soc2kit
from soc2kit.controls import compare
from soc2kit.controls.render import VOLATILE_END, VOLATILE_START

APP_SOURCE = '''
"""A small service whose control documents are committed."""
import uuid

import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import soc2kit
from soc2kit.crypto import Encrypted, uuid7


class Base(DeclarativeBase):
    pass


class Member(Base):
    __tablename__ = "members"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    member_id: Mapped[str] = mapped_column(sa.String(64))
    email: Mapped[str] = mapped_column(Encrypted(sa.String(320)))
    notes: Mapped[str | None] = mapped_column(
        Encrypted(sa.Text, key_scope="member_id"), nullable=True
    )


settings = soc2kit.Settings()
app = FastAPI(title="members", **settings.fastapi_docs_kwargs())
kit = soc2kit.install(app, settings)
app.include_router(kit.health_router())
Base.metadata.create_all(kit.engine)
kit.policy.grant("clerk", "members", "read")


@app.get("/members", dependencies=[soc2kit.require("members", "read")])
def members() -> list[str]:
    return []
'''

NEW_ROUTE = """

@app.get("/members/export", dependencies=[soc2kit.require("members", "export")])
def export_members() -> list[str]:
    return []
"""

CRITERIA = ("--criteria", "confidentiality", "--criteria", "privacy")


def _rehash(folder: Path, name: str) -> None:
    """Pin the edited file's new SHA-256 in the manifest, as a regeneration would."""
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")


def _edit_volatile(text: str) -> str:
    """Change every volatile block (times, counts, ages) and nothing else."""
    pattern = re.compile(re.escape(VOLATILE_START) + r"\n(.*?)\n" + re.escape(VOLATILE_END), re.S)
    edited, count = pattern.subn(
        lambda m: f"{VOLATILE_START}\n{re.sub(r'[0-9]', '7', m[1])}\n{VOLATILE_END}", text
    )
    assert count >= 5 and edited != text
    return edited


def test_check_accepts_new_timestamps_and_volatile_edits_and_refuses_drift(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    seed_history(ctl_settings())
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    (tmp_path / "ctl_members.py").write_text(APP_SOURCE, "utf-8")
    committed = tmp_path / "docs"
    args = ("controls", "--app", "ctl_members:app", *CRITERIA, "--out")
    first = run_cli(*args, str(committed), cwd=tmp_path, env=env)
    assert first.returncode == 0, shown(first)

    # Later: the fresh generation made by --check carries another timestamp.
    generated = json.loads((committed / "manifest.json").read_text("utf-8"))["generated"]
    wait = datetime.fromisoformat(generated).timestamp() + 1.05 - time.time()
    if wait > 0:
        time.sleep(wait)

    # 1. Only volatile blocks edited (and the manifest re-pinned): still up to date.
    volatile = shutil.copytree(committed, tmp_path / "volatile")
    for name in ("controls.md", "controls.html"):
        path = volatile / name
        path.write_text(_edit_volatile(path.read_text("utf-8")), "utf-8")
        _rehash(volatile, name)
    result = run_cli(*args, str(volatile), "--check", cwd=tmp_path, env=env)
    assert result.returncode == 0, shown(result)
    assert f"{volatile} is up to date" in result.stdout

    # 2. A hand edit outside the volatile blocks: caught, and the file is named.
    edited = shutil.copytree(committed, tmp_path / "edited")
    md = (edited / "controls.md").read_text("utf-8")
    row = "| CC1.1 | Leadership shows commitment to integrity and ethical values |"
    assert f"{row} organization-provided |" in md
    (edited / "controls.md").write_text(
        md.replace(f"{row} organization-provided |", f"{row} service-provided |"), "utf-8"
    )
    result = run_cli(*args, str(edited), "--check", cwd=tmp_path, env=env)
    assert result.returncode == 1, shown(result)
    assert "controls.md: edited after it was generated" in result.stdout
    assert "controls.md: differs from a fresh generation" in result.stdout
    assert "-| CC1.1 | Leadership" in result.stdout  # the diff shows the edited row
    assert "difference(s): run `soc2kit controls" in result.stdout

    # 3. No manifest: nothing pins the files, so the folder is not trusted.
    unpinned = shutil.copytree(committed, tmp_path / "unpinned")
    (unpinned / "manifest.json").unlink()
    result = run_cli(*args, str(unpinned), "--check", cwd=tmp_path, env=env)
    assert result.returncode == 1, shown(result)
    assert "manifest.json: missing" in result.stdout

    # 4. The code changed (a new route): the committed documents are stale.
    (tmp_path / "ctl_members.py").write_text(APP_SOURCE + NEW_ROUTE, "utf-8")
    result = run_cli(*args, str(committed), "--check", cwd=tmp_path, env=env)
    assert result.returncode == 1, shown(result)
    assert "evidence/routes.json: differs from a fresh generation" in result.stdout
    assert "controls.md: differs from a fresh generation" in result.stdout
    assert re.search(r'^\+\s+"path": "/members/export"$', result.stdout, re.M)
    assert re.search(r'^\+\s+"access": "members:export",$', result.stdout, re.M)
    assert "edited after it was generated" not in result.stdout  # nobody touched the files


def test_check_right_after_generation_on_a_fresh_database(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    """What `soc2kit controls` then `soc2kit controls --check` compare, on a new database.

    The seal interval is long so that nothing is sealed during the first
    collection (with the default 0.5 s, the first collection usually finishes
    before the first seal: the CLI shows the same failure).
    """
    settings = ctl_settings(audit_seal_interval_seconds=60)
    app, _ = build_app(settings)
    generate(app, tmp_path / "committed")
    app, _ = build_app(settings)
    generate(app, tmp_path / "fresh")
    assert compare(tmp_path / "committed", tmp_path / "fresh") == []
