"""Load ``module:attribute`` application references for CLI commands."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from soc2kit.errors import ConfigurationError


def load_object(ref: str) -> Any:
    """Import ``package.module:attr`` (the current directory is importable, as with uvicorn)."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"expected module:attribute, got {ref!r}")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc.msg}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConfigurationError(f"{module_name!r} has no attribute {attr!r}") from exc
    return obj
