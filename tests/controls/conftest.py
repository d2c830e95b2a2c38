"""Fixtures of the control-document tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import soc2kit


@pytest.fixture
def ctl_settings(
    make_settings: Callable[..., soc2kit.Settings],
) -> Callable[..., soc2kit.Settings]:
    """make_settings with a short policy poll, so a PostgreSQL app shuts down promptly."""

    def factory(**overrides: Any) -> soc2kit.Settings:
        return make_settings(**{"policy_poll_seconds": 0.2, **overrides})

    return factory
