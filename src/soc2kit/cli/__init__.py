"""The ``soc2kit`` command line (typer + rich)."""

from soc2kit.cli.main import app, main

__all__ = ["app", "main"]
