"""``soc2kit controls --check`` must not go stale when only observed values change.

Observed values (event counts, key ages) sit in volatile blocks that ``--check``
drops. The first generation on a fresh database has no sealed events in the
period, so the audit-capture item has no observation table; the next one has.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

import soc2kit
from soc2kit.controls import collect, compare, write


def _generate(settings: soc2kit.Settings, out: Path) -> list[tuple[str, str]]:
    """One ``soc2kit controls`` run: a new app and kit on the same database."""
    app = FastAPI(**settings.fastapi_docs_kwargs())
    kit = soc2kit.install(app, settings)
    app.include_router(kit.health_router())
    report = collect(app, app_ref="test_app:app", scope=())
    write(report, out)
    return next(e.observations for e in report.evidence if e.id == "audit-capture")


def test_check_ignores_an_observation_table_appearing(
    make_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    first = _generate(settings, tmp_path / "committed")
    second = _generate(settings, tmp_path / "fresh")
    assert first == [], "precondition: no sealed events at the first generation"
    assert second, "precondition: the first run's events are sealed by the second"
    assert compare(tmp_path / "committed", tmp_path / "fresh") == []
