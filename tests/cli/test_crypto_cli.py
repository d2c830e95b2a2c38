"""``soc2kit keys`` and ``soc2kit encryption``: the keyring and the jobs, run as an operator would.

The CLI runs in a subprocess (cwd = tmp_path, so ``models:Person`` imports the
model module written there). Rows are seeded and read back in-process through
a Kit built with explicit Settings on the same database and data directory.
"""

from __future__ import annotations

import base64
import getpass
import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

import soc2kit
from soc2kit.crypto import key_id_of
from soc2kit.db import normalize_url

MODELS = '''
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from soc2kit.crypto import BlindIndex, Encrypted, uuid7


class Base(DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = "people"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    email: Mapped[str | None] = mapped_column(Encrypted(sa.String(100)), nullable=True)
    email_bidx: Mapped[bytes | None] = mapped_column(BlindIndex("email"), nullable=True)


class Plain(Base):
    """Mapped, but nothing encrypted."""

    __tablename__ = "plain"
    id: Mapped[int] = mapped_column(primary_key=True)


helper = 3
'''

ROWS = 20


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


OPERATOR = _operator()


def new_kek(kek_id: str) -> str:
    return f"{kek_id}:" + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SOC2KIT_")}
    full_env.update(
        {
            "SOC2KIT_ENVIRONMENT": "test",
            "SOC2KIT_DATA_DIR": str(cwd / ".soc2kit"),
            "SOC2KIT_DATABASE_URL": sqlite_url(cwd),
            "COLUMNS": "200",
        }
    )
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "soc2kit.cli", *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, (result.args, result.stdout)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), (result.args, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


# fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def models(tmp_path: Path) -> Iterator[ModuleType]:
    """models.py in tmp_path (for the CLI), loaded in-process under a unique name."""
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    name = f"crypto_cli_models_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(name, None)


@contextmanager
def open_kit(url: str, tmp_path: Path, kek: str | None = None) -> Iterator[soc2kit.Kit]:
    """A Kit on the CLI's database and data directory (explicit settings, no env)."""
    extra: dict[str, Any] = {} if kek is None else {"encryption_kek": kek}
    settings = soc2kit.Settings(
        environment="test", database_url=url, data_dir=tmp_path / ".soc2kit", **extra
    )
    kit = soc2kit.install(FastAPI(), settings)
    try:
        yield kit
    finally:
        kit.shutdown()


def seed(
    models: ModuleType,
    url: str,
    tmp_path: Path,
    *,
    kek: str | None = None,
    create_keys: bool = False,
    rows: int = ROWS,
) -> list[str]:
    emails = sorted(f"person{i}@example.com" for i in range(rows))
    with open_kit(url, tmp_path, kek) as kit:
        models.Base.metadata.create_all(kit.engine)
        kit.keys.load(create=create_keys)
        with kit.sessions() as s:
            s.add_all([models.Person(email=e) for e in emails])
            s.commit()
    return emails


def read_back(models: ModuleType, url: str, tmp_path: Path, kek: str | None = None) -> list[str]:
    """Every email decrypted through the ORM; the blind index finds one of them."""
    with open_kit(url, tmp_path, kek) as kit, kit.sessions() as s:
        people = s.scalars(sa.select(models.Person).order_by(models.Person.id)).all()
        found = s.scalars(
            sa.select(models.Person).where(models.Person.email.bidx_eq("person3@example.com"))
        ).all()
        assert [p.email for p in found] == ["person3@example.com"]
        return sorted(p.email for p in people)


def query(url: str, sql: str) -> list[Any]:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)).all())
    finally:
        engine.dispose()


def raw_people(url: str) -> dict[str, tuple[bytes, bytes]]:
    return {
        str(r[0]): (bytes(r[1]), bytes(r[2]))
        for r in query(url, "SELECT id, email, email_bidx FROM people")
    }


def key_ids_in_rows(url: str) -> set[str]:
    return {f"{key_id_of(email):08x}" for email, _ in raw_people(url).values()}


def key_states(url: str) -> dict[str, tuple[str, str, str]]:
    """hex id -> (purpose, scope, state)."""
    return {
        f"{int(r[0]):08x}": (r[1], r[2], r[3])
        for r in query(url, "SELECT key_id, purpose, scope, state FROM soc2kit_data_keys")
    }


def audit_events(url: str) -> list[dict[str, Any]]:
    return [json.loads(r[0]) for r in query(url, "SELECT event FROM soc2kit_audit_events")]


def status_row(stdout: str, table_column: str = "people.email") -> dict[str, str]:
    """The `encryption status` table row of ``table_column`` as {header: cell}."""
    lines = stdout.splitlines()
    header = next(ln for ln in lines if "old keys" in ln)
    names = [c.strip() for c in header.strip().strip("┃").split("┃")]
    row = next(ln for ln in lines if table_column in ln)
    cells = [c.strip() for c in row.strip().strip("│").split("│")]
    assert len(cells) == len(names), stdout
    return dict(zip(names, cells, strict=True))


def encodings(blob: bytes) -> set[str]:
    forms = {
        base64.b64encode(blob).decode(),
        base64.urlsafe_b64encode(blob).decode(),
        blob.hex(),
    }
    forms |= {f.rstrip("=") for f in forms}
    forms |= {f[:16] for f in forms}  # a fragment is a leak too
    return forms


# the operator's round trip ---------------------------------------------------------------


def test_generate_list_rotate_reencrypt_retire_and_resume(
    tmp_path: Path, models: ModuleType
) -> None:
    url = sqlite_url(tmp_path)
    out = ok(run(["keys", "generate"], tmp_path))
    assert out.startswith("created keys ")
    created = out.removeprefix("created keys ").strip().split(", ")
    assert len(created) == 2 and all(len(k) == 8 for k in created), out
    assert "nothing created" in ok(run(["keys", "generate"], tmp_path))
    assert len(key_states(url)) == 2

    emails = seed(models, url, tmp_path)  # create=False: the CLI's keys are used
    (enc_id,) = key_ids_in_rows(url)
    assert enc_id in created

    # `keys list`: ids, purpose, scope, state, and no key material at all.
    listed = run(["keys", "list"], tmp_path)
    table = ok(listed)
    for key_id in created:
        line = next(ln for ln in table.splitlines() if key_id in ln)
        assert "service" in line and "ACTIVE" in line
        assert ("enc" in line) == (key_id == enc_id) and ("bidx" in line) != (key_id == enc_id)
    secrets: set[str] = set()
    for wrapped, check in query(url, "SELECT wrapped_key, check_value FROM soc2kit_data_keys"):
        secrets |= encodings(bytes(wrapped)) | encodings(bytes(check))
    dev_kek = json.loads((tmp_path / ".soc2kit" / "dev-kek.json").read_text())
    for material in dev_kek["keys"].values():
        secrets |= {material, material[:16]}
        secrets |= encodings(base64.urlsafe_b64decode(material + "=" * (-len(material) % 4)))
    leaked = {s for s in secrets if s in listed.stdout + listed.stderr}
    assert not leaked

    # Rotate: every row is now on an old key, and the old key cannot be retired yet.
    out = ok(run(["keys", "rotate", "--reason", "quarterly"], tmp_path))
    new_id = out.split()[1]
    assert new_id not in created and key_states(url)[enc_id][2] == "DECRYPT_ONLY"
    row = status_row(ok(run(["encryption", "status", "--model", "models:Person"], tmp_path)))
    assert row["old keys"] == str(ROWS) and row["rows per key id"] == f"{enc_id}: {ROWS}"
    line = one_error_line(run(["keys", "retire", enc_id, "--model", "models:Person"], tmp_path))
    assert f"{ROWS} rows" in line and enc_id in line
    assert key_states(url)[enc_id][2] == "DECRYPT_ONLY"

    # Dry run: counts, writes nothing.
    before = raw_people(url)
    out = ok(run(["encryption", "reencrypt", "--model", "models:Person", "--dry-run"], tmp_path))
    assert f"{ROWS} of {ROWS} rows need reencrypt" in out and "nothing written" in out
    assert raw_people(url) == before
    assert query(url, "SELECT count(*) FROM soc2kit_encryption_jobs")[0][0] == 0

    # The real run, in batches of 7 (3 batches, the last one short).
    result = run(
        ["encryption", "reencrypt", "--model", "models:Person", "--batch-size", "7"], tmp_path
    )
    out = ok(result)
    assert out.strip().endswith("verification: 0 rows left"), out
    assert f"{ROWS} rows rewritten" in out and "(resumed)" not in out
    assert f"{ROWS}/{ROWS}" in result.stderr  # the progress bar is on stderr
    after = raw_people(url)
    assert after.keys() == before.keys()
    assert all(after[pk][0] != before[pk][0] for pk in before)
    assert key_ids_in_rows(url) == {new_id}
    row = status_row(ok(run(["encryption", "status", "--model", "models:Person"], tmp_path)))
    assert row["old keys"] == "0" and row["rows per key id"] == f"{new_id}*: {ROWS}"
    assert row["plaintext"] == "0" and row["bidx"] == "ok"

    # Now the old key retires.
    out = ok(run(["keys", "retire", enc_id, "--model", "models:Person"], tmp_path))
    assert out.strip() == f"key {enc_id} retired"
    assert key_states(url)[enc_id][2] == "RETIRED"

    # A fresh rotation, re-encrypted one batch at a time: stop, then resume.
    third_id = ok(run(["keys", "rotate"], tmp_path)).split()[1]
    args = ["encryption", "reencrypt", "--model", "models:Person", "--batch-size", "7"]
    out = ok(run([*args, "--max-batches", "1"], tmp_path))
    assert "stopped after 7 rows" in out and "run again to resume" in out
    assert key_ids_in_rows(url) == {new_id, third_id}
    out = ok(run(args, tmp_path))
    assert "(resumed)" in out and out.strip().endswith("verification: 0 rows left"), out
    assert key_ids_in_rows(url) == {third_id}

    assert read_back(models, url, tmp_path) == emails

    # Every key command left its audit event, by the operator.
    events = audit_events(url)
    by_cli = [e for e in events if e["actor_id"] == OPERATOR]
    kinds = {e["event_type"] for e in by_cli}
    assert {
        "crypto.key.created",
        "crypto.key.rotated",
        "crypto.key.retired",
        "crypto.job.started",
        "crypto.job.finished",
    } <= kinds
    created_events = [e for e in by_cli if e["event_type"] == "crypto.key.created"]
    assert {e["resource_id"] for e in created_events} >= set(created)
    rotated = [e for e in by_cli if e["event_type"] == "crypto.key.rotated"]
    assert [(e["resource_id"], e["extra"]["previous"]) for e in rotated] == [
        (new_id, enc_id),
        (third_id, new_id),
    ]
    assert rotated[0]["reason"] == "quarterly"
    retired = [e for e in by_cli if e["event_type"] == "crypto.key.retired"]
    assert [e["resource_id"] for e in retired] == [enc_id]
    assert all(e["actor_type"] == "user" for e in by_cli)
    assert not {e["event_type"] for e in events if e["actor_id"] != OPERATOR} & {
        "crypto.key.rotated",
        "crypto.key.retired",
    }
    assert not {s for s in secrets if s in json.dumps(events)}


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_reencrypt_stops_and_resumes_on_postgresql(
    database_url: str, tmp_path: Path, models: ModuleType
) -> None:
    env = {"SOC2KIT_DATABASE_URL": database_url}
    emails = seed(models, database_url, tmp_path, create_keys=True)
    with open_kit(database_url, tmp_path) as kit:
        kit.keys.reload()
        new_id = f"{kit.keys.rotate(actor='test'):08x}"
    args = ["encryption", "reencrypt", "--model", "models:Person", "--batch-size", "7"]
    out = ok(run([*args, "--max-batches", "2"], tmp_path, env))
    assert "stopped after 14 rows" in out
    out = ok(run(args, tmp_path, env))
    assert "(resumed)" in out and out.strip().endswith("verification: 0 rows left"), out
    assert key_ids_in_rows(database_url) == {new_id}
    assert read_back(models, database_url, tmp_path) == emails


# destroy, rewrap --------------------------------------------------------------------------


def test_destroy_asks_unless_yes_and_is_audited(tmp_path: Path, models: ModuleType) -> None:
    url = sqlite_url(tmp_path)
    with open_kit(url, tmp_path) as kit:
        kit.keys.load(create=True)
        kit.keys.prefetch(["s1", "s2"])
    subject_keys = {k: v for k, v in key_states(url).items() if v[1] == "s1"}
    assert [v[2] for v in subject_keys.values()] == ["ACTIVE"]

    refused = run(["keys", "destroy", "--subject", "s1"], tmp_path, stdin="n\n")
    assert refused.returncode == 1 and "unrecoverable" in refused.stdout  # it asked
    assert one_error_line(refused) == "error: not confirmed; nothing destroyed"
    assert {k: key_states(url)[k] for k in subject_keys} == subject_keys

    out = ok(
        run(
            ["keys", "destroy", "--subject", "s1", "--yes", "--reason", "erasure request"],
            tmp_path,
        )
    )
    assert "destroyed 1 key(s) of subject s1" in out and "backups" in out
    states = key_states(url)
    assert [states[k][2] for k in subject_keys] == ["DESTROYED"]
    assert [v[2] for v in states.values() if v[1] == "s2"] == ["ACTIVE"]  # others untouched
    assert query(url, "SELECT wrapped_key FROM soc2kit_data_keys WHERE scope = 's1'") == [(None,)]

    (event,) = [e for e in audit_events(url) if e["event_type"] == "crypto.key.destroyed"]
    assert event["actor_id"] == OPERATOR and event["resource_id"] == "s1"
    assert event["reason"] == "erasure request" and event["extra"]["keys_destroyed"] == 1


def test_rewrap_moves_every_key_to_the_new_kek(tmp_path: Path, models: ModuleType) -> None:
    url = sqlite_url(tmp_path)
    old, new = new_kek("old"), new_kek("new")
    emails = seed(models, url, tmp_path, kek=old, create_keys=True)
    only_new = {"SOC2KIT_ENCRYPTION_KEK": new}
    status = ["encryption", "status", "--model", "models:Person"]

    line = one_error_line(run(status, tmp_path, only_new))  # not rewrapped yet
    assert "'old'" in line and "not configured" in line

    out = ok(run(["keys", "rewrap"], tmp_path, {"SOC2KIT_ENCRYPTION_KEK": f"{new},{old}"}))
    assert out.strip() == "re-wrapped 2 key(s) under local:new"
    assert {r[0] for r in query(url, "SELECT kek_ref FROM soc2kit_data_keys")} == {"local:new"}

    row = status_row(ok(run(status, tmp_path, only_new)))
    assert row["old keys"] == "0" and row["rows per key id"].endswith(f"*: {ROWS}")
    assert read_back(models, url, tmp_path, kek=new) == emails

    (event,) = [e for e in audit_events(url) if e["event_type"] == "crypto.kek.rewrapped"]
    assert event["actor_id"] == OPERATOR
    assert event["extra"] == {"keys": 2, "kek": "local:new"}
    kek_material = new.split(":", 1)[1]
    assert kek_material not in json.dumps(audit_events(url))


# errors: one line, no traceback ---------------------------------------------------------


ERROR_CASES: list[tuple[list[str], dict[str, str], str]] = [
    (["keys", "retire", "zz", "--model", "models:Person"], {}, "8 hex digits"),
    (["keys", "retire", "00000000", "--model", "models:Person"], {}, "8 hex digits"),
    (["keys", "destroy", "--subject", "", "--yes"], {}, "service-wide"),
    (["encryption", "status", "--model", "nosuch:Thing"], {}, "nosuch"),
    (["encryption", "status", "--model", "models:helper"], {}, "not a mapped SQLAlchemy model"),
    (["encryption", "status", "--model", "models:Plain"], {}, "no Encrypted columns"),
    (["encryption", "status"], {}, "error:"),
    (["keys", "list"], {"SOC2KIT_ENVIRONMENT": "production"}, "no key-encryption key"),
]


def test_errors_are_one_line(tmp_path: Path) -> None:
    # Independent cases, each in its own directory: run side by side to save wall time.
    def case(index: int) -> tuple[str, subprocess.CompletedProcess[str]]:
        args, env, needle = ERROR_CASES[index]
        cwd = tmp_path / f"case{index}"
        cwd.mkdir()
        (cwd / "models.py").write_text(MODELS)
        return needle, run(args, cwd, env)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(case, range(len(ERROR_CASES))))
    for needle, result in results:
        line = one_error_line(result)
        assert needle in line, (result.args, line)
    # Production without a KEK did not fall back to a generated development KEK.
    assert not (tmp_path / f"case{len(ERROR_CASES) - 1}" / ".soc2kit" / "dev-kek.json").exists()


# known bugs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin", "code", "needle"),
    [
        (["encryption", "status"], None, 2, "--model"),
        (["keys", "destroy", "--subject", "s1"], "", 130, "aborted"),
    ],
)
def test_usage_errors_name_the_problem(
    tmp_path: Path, models: ModuleType, args: list[str], stdin: str | None, code: int, needle: str
) -> None:
    result = run(args, tmp_path, stdin=stdin)
    assert "unexpected" not in result.stderr, result.stderr
    assert result.returncode == code and needle in result.stderr, result.stderr


def test_unmapped_class_is_named(tmp_path: Path, models: ModuleType) -> None:
    line = one_error_line(run(["encryption", "status", "--model", "models:Base"], tmp_path))
    assert "unexpected" not in line and "models:Base" in line, line


def test_old_blind_index_key_cannot_retire_while_indexes_use_it(
    tmp_path: Path, models: ModuleType
) -> None:
    url = sqlite_url(tmp_path)
    seed(models, url, tmp_path, create_keys=True)
    with open_kit(url, tmp_path) as kit:
        kit.keys.reload()
        kit.keys.rotate(purpose="bidx", actor="test")
        (status,) = kit.encryption.status(models.Person)
    assert status.stale_blind_index == ROWS  # every blind index is still on the old key
    (old_bidx,) = [k for k, v in key_states(url).items() if v[0] == "bidx" and v[2] != "ACTIVE"]
    result = run(["keys", "retire", old_bidx, "--model", "models:Person"], tmp_path)
    assert result.returncode != 0, result.stdout
    assert key_states(url)[old_bidx][2] == "DECRYPT_ONLY"


def test_rotate_is_refused_for_a_destroyed_subject(tmp_path: Path, models: ModuleType) -> None:
    url = sqlite_url(tmp_path)
    with open_kit(url, tmp_path) as kit:
        kit.keys.load(create=True)
        kit.keys.prefetch(["s1"])
        kit.keys.destroy_subject("s1", actor="test")
    result = run(["keys", "rotate", "--subject", "s1"], tmp_path)
    assert [v[2] for v in key_states(url).values() if v[1] == "s1"] == ["DESTROYED"]
    one_error_line(result)
