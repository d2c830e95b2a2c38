"""A separate process writing audit events, for test_audit_processes.py.

Usage::

    python audit_worker.py load  URL DATA_DIR WORKER THREADS N
    python audit_worker.py crash URL DATA_DIR

``load``: THREADS threads each record N "t.load" events (markers worker, thread,
n) while this process's sealer thread runs, then flush and shut down; prints
one JSON line with what it saw. ``crash``: business transactions forever (a
scratch row and its audit event, committed together), printing each committed
marker; the test kills it with SIGKILL.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI

import soc2kit

SCRATCH = "t_audit_scratch"


def build_kit(url: str, data_dir: str) -> soc2kit.Kit:
    settings = soc2kit.Settings(
        environment="test",
        database_url=url,
        data_dir=Path(data_dir),
        audit_log_events=False,
        audit_seal_interval_seconds=0.02,  # sealers of every process contend
    )
    kit = soc2kit.install(FastAPI(), settings)
    assert kit.audit.sealer is not None
    kit.audit.sealer.start()  # no lifespan runs here
    return kit


def load(url: str, data_dir: str, worker: int, threads: int, n: int) -> None:
    kit = build_kit(url, data_dir)
    errors: list[str] = []
    ids: list[str] = []

    def run(j: int) -> None:
        try:
            for k in range(n):
                event = kit.audit.record(
                    "t.load", action="update", outcome="success", worker=worker, thread=j, n=k
                )
                ids.append(event.event_id)
        except BaseException as exc:  # reported to the test
            errors.append(repr(exc))

    pool = [threading.Thread(target=run, args=(j,)) for j in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    kit.audit.flush()
    # What flush() promised: every event this process recorded is sealed now.
    with kit.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT event_id FROM soc2kit_audit_inbox"),
        ).all()
    pending = sorted({str(r.event_id) for r in rows} & set(ids))
    health = kit.audit.health()
    kit.shutdown()
    report = {"errors": errors, "unsealed_after_flush": len(pending), "health": health}
    sys.stdout.write(json.dumps(report) + "\n")


def crash(url: str, data_dir: str) -> None:
    kit = build_kit(url, data_dir)
    marker = 0
    while True:
        with kit.engine.begin() as conn:
            conn.execute(
                sa.text(f"INSERT INTO {SCRATCH} (id, marker) VALUES (:id, :m)"),
                {"id": marker, "m": f"m{marker}"},
            )
            kit.audit.record_in(conn, "t.biz", action="create", outcome="success", marker=marker)
        sys.stdout.write(f"{marker}\n")
        sys.stdout.flush()
        marker += 1


if __name__ == "__main__":
    mode, url, data_dir, *rest = sys.argv[1:]
    if mode == "load":
        load(url, data_dir, *(int(x) for x in rest))
    elif mode == "crash":
        crash(url, data_dir)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
