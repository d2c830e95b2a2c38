"""The sealed audit log across real processes: concurrent sealers, and a writer killed mid-run.

Workers are separate Python processes (tests/audit/audit_worker.py) sharing one
database and one data directory (so one development signing key). The data
directory and the tables are primed here first, so workers never race to
create the key files or to migrate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

import soc2kit
from soc2kit.audit.checkpoints import Signer
from soc2kit.crypto.providers import LocalKeyProvider

WORKER = Path(__file__).with_name("audit_worker.py")
ROOT = Path(__file__).resolve().parents[2]
SCRATCH = "t_audit_scratch"
POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)

PROCESSES = 4
THREADS = 3
EVENTS_PER_THREAD = 50


def settings_for(url: str, data_dir: Path) -> soc2kit.Settings:
    return soc2kit.Settings(
        environment="test", database_url=url, data_dir=data_dir, audit_log_events=False
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "shared-data"


@pytest.fixture
def primed(database_url: str, data_dir: Path) -> str:
    """The database migrated and the shared development keys created, by this process."""
    data_dir.mkdir()
    Signer.development_key(data_dir, "soc2kit")
    LocalKeyProvider.development(data_dir)
    kit = soc2kit.install(FastAPI(), settings_for(database_url, data_dir))
    with kit.engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {SCRATCH} (id INTEGER PRIMARY KEY, marker TEXT)"))
    kit.engine.dispose()  # nothing recorded: no shutdown event to add
    return database_url


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def fresh_kit(url: str, data_dir: Path) -> soc2kit.Kit:
    return soc2kit.install(FastAPI(), settings_for(url, data_dir))


def sealed_events(engine: sa.Engine) -> list[tuple[int, dict]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT seq, event FROM soc2kit_audit_events ORDER BY seq"))
        return [(int(r.seq), json.loads(r.event)) for r in rows]


def inbox_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM soc2kit_audit_inbox")).scalar_one())


def run_load_workers(url: str, data_dir: Path) -> list[dict]:
    """PROCESSES load workers at once; each one's JSON report."""
    args = [str(THREADS), str(EVENTS_PER_THREAD)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "load", url, str(data_dir), str(i), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=worker_env(),
        )
        for i in range(PROCESSES)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


# many processes, one sequence ------------------------------------------------------------


@POSTGRES_ONLY
def test_sealers_in_many_processes_keep_one_contiguous_log(primed: str, data_dir: Path) -> None:
    reports = run_load_workers(primed, data_dir)
    assert all(r["errors"] == [] for r in reports), reports
    assert all(r["health"] is None for r in reports), reports

    kit = fresh_kit(primed, data_dir)
    try:
        kit.audit.flush()
        assert inbox_count(kit.engine) == 0
        rows = sealed_events(kit.engine)
        report = kit.audit.verify()
        assert report.ok, report.to_dict()
        assert report.status == "pass"
        assert report.checked == len(rows)
        assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))

        markers = Counter(
            (e["extra"]["worker"], e["extra"]["thread"], e["extra"]["n"])
            for _, e in rows
            if e["event_type"] == "t.load"
        )
        expected = {
            (i, j, k)
            for i in range(PROCESSES)
            for j in range(THREADS)
            for k in range(EVENTS_PER_THREAD)
        }
        assert set(markers) == expected
        assert set(markers.values()) == {1}
        # Nothing else than the load and each worker's service.stop.
        others = Counter(e["event_type"] for _, e in rows if e["event_type"] != "t.load")
        assert others == {"service.stop": PROCESSES}
        assert len({e["event_id"] for _, e in rows}) == len(rows)
    finally:
        kit.shutdown()


@POSTGRES_ONLY
def test_flush_seals_own_events_while_other_processes_seal(primed: str, data_dir: Path) -> None:
    """flush() promises "seal the inbox now": also while other replicas seal concurrently."""
    unsealed = 0
    for _attempt in range(3):  # the race is timing dependent: a few rounds of workers
        unsealed += sum(r["unsealed_after_flush"] for r in run_load_workers(primed, data_dir))
        if unsealed:
            break
    assert unsealed == 0


# a writer killed mid-transaction ----------------------------------------------------------


def test_killed_writer_leaves_every_committed_change_with_exactly_one_event(
    primed: str, data_dir: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "crash", primed, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )
    printed: list[int] = []
    first = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            printed.append(int(line))
            first.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        if not first.wait(30):
            proc.kill()
            pytest.fail(f"worker wrote nothing: {proc.communicate()[1]}")
        time.sleep(0.75)  # writes and background seals in flight
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
        thread.join(10)
    assert proc.returncode == -signal.SIGKILL
    assert len(printed) > 10

    kit = fresh_kit(primed, data_dir)
    try:
        kit.audit.flush()
        deadline = time.monotonic() + 10
        while inbox_count(kit.engine) and time.monotonic() < deadline:
            time.sleep(0.2)  # a dead client's backend may still hold the sealer's lock
            kit.audit.flush()
        assert inbox_count(kit.engine) == 0
        with kit.engine.connect() as conn:
            committed = {int(r.id) for r in conn.execute(sa.text(f"SELECT id FROM {SCRATCH}"))}
        assert set(printed) <= committed  # printed only after the commit
        rows = sealed_events(kit.engine)
        markers = Counter(e["extra"]["marker"] for _, e in rows if e["event_type"] == "t.biz")
        assert set(markers) == committed  # no event without its change, none missing
        assert set(markers.values()) == {1}
        assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
        report = kit.audit.verify()
        assert report.ok, report.to_dict()
        assert report.status == "pass"
        assert report.checked == len(rows)
    finally:
        kit.shutdown()
