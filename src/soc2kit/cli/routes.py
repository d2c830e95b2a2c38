"""``soc2kit routes``: the route inventory; exit 1 while any route is undeclared.

Run it in CI: it fails the build on the route the gate would refuse with 403,
before that route reaches production (where start-up refuses it too).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from soc2kit.authz.inventory import RouteEntry


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def routes(
    app_ref: Annotated[str, typer.Option("--app", help="The application, as module:attribute.")],
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table for people, json for machines.")
    ] = OutputFormat.table,
) -> None:
    """List every route with its permission or public reason; exit 1 if any is undeclared."""
    from soc2kit.authz.inventory import build_inventory, undeclared
    from soc2kit.cli.loader import load_object

    entries = build_inventory(load_object(app_ref))
    missing = undeclared(entries)
    if output is OutputFormat.json:
        document = {"routes": [_as_json(e) for e in entries], "undeclared": len(missing)}
        typer.echo(json.dumps(document, indent=2))
    else:
        _print_table(entries, len(missing))
    raise typer.Exit(1 if missing else 0)


def _as_json(entry: RouteEntry) -> dict[str, Any]:
    declaration: dict[str, str] | None = None
    if entry.declaration is not None and entry.declaration[0] == "permission":
        _, resource, action = entry.declaration
        declaration = {"type": "permission", "resource": resource, "action": action}
    elif entry.declaration is not None:
        declaration = {"type": "public", "reason": entry.declaration[1]}
    return {
        "methods": list(entry.methods),
        "path": entry.path,
        "kind": entry.kind,
        "declaration": declaration,
    }


def _print_table(entries: list[RouteEntry], missing: int) -> None:
    out = Console()
    table = Table(title=f"{len(entries)} route(s), {missing} undeclared")
    table.add_column("method")
    table.add_column("path")
    table.add_column("access")
    for entry in entries:
        methods = ", ".join(entry.methods) or "* (mount)"
        # Text, not markup: paths and reasons may hold square brackets.
        access = Text(entry.describe(), style="bold red" if not entry.declared else "")
        table.add_row(Text(methods), Text(entry.path), access)
    out.print(table)
    if missing:
        out.print(
            Text(
                f"{missing} undeclared route(s): add require(...) or public('reason'); "
                "the gate answers them 403",
                style="bold red",
            )
        )
