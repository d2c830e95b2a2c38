"""``soc2kit apikeys``: create, list and revoke service-account API keys.

The key is printed once, on stdout and alone on its line (so it can be piped
into a secret manager); everything else goes to stderr. Listings never show a
key or its hash. Every change is an audit event, written before the command
exits.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from soc2kit.authn.apikeys import MAX_LIFETIME, ApiKeyStore

apikeys_app = typer.Typer(help="Service-account API keys.", no_args_is_help=True)

_DURATION = re.compile(r"(\d{1,6})([mhd])")
_UNITS = MappingProxyType({"m": "minutes", "h": "hours", "d": "days"})

DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="Defaults to SOC2KIT_DATABASE_URL / the settings default."),
]


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h`` or ``30m``; ValueError beyond 365 days or when malformed."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"--expires takes a duration such as 90d, 12h or 30m, not {text!r}")
    value = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if value <= timedelta(0):
        raise ValueError("--expires must be longer than zero")
    if value > MAX_LIFETIME:
        raise ValueError("--expires may be at most 365d: API keys must expire within a year")
    return value


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in some containers
        return "cli"


def _fail(message: str, code: int = 2) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(code)


@contextmanager
def _store(database_url: str | None) -> Iterator[ApiKeyStore]:
    """A store on the configured database; tables upgraded when ``auto_migrate`` allows."""
    from soc2kit import db
    from soc2kit.audit.setup import build_trail
    from soc2kit.settings import Settings

    settings = Settings()
    engine = db.create_engine(database_url or settings.database_url)
    audit = build_trail(settings, engine)
    try:
        if settings.migrate_on_install:
            db.upgrade(engine)
        yield ApiKeyStore(engine, settings, audit)
    finally:
        try:
            audit.close()  # writes the queued audit events before the command ends
        finally:
            engine.dispose()


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


@apikeys_app.command("create")
def create(
    subject: Annotated[str, typer.Option("--subject", help="The service account (subject).")],
    expires: Annotated[str, typer.Option("--expires", help="Lifetime: 90d, 12h, 30m (max 365d).")],
    role: Annotated[list[str] | None, typer.Option("--role", help="A role; repeatable.")] = None,
    description: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant of the service account.")] = None,
    created_by: Annotated[
        str | None, typer.Option(help="Recorded as the actor; defaults to cli:<user>.")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key and print it once: store it now, it cannot be shown again."""
    try:
        lifetime = parse_duration(expires)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    with _store(database_url) as store:
        try:
            key_id, key = store.create(
                subject,
                role or [],
                lifetime,
                created_by=created_by or _operator(),
                description=description,
                tenant=tenant,
            )
        except ValueError as exc:
            raise _fail(str(exc)) from None
        info = store.get(key_id)
    err = Console(stderr=True, soft_wrap=True)
    err.print(f"key id:  {key_id}", markup=False, highlight=False)
    err.print(f"subject: {subject}", markup=False, highlight=False)
    err.print(f"expires: {_when(info.expires_at if info else None)} UTC", markup=False)
    err.print("the key follows; it is shown only this once:", markup=False)
    Console(soft_wrap=True).print(key, markup=False, highlight=False)


@apikeys_app.command("list")
def list_keys(database_url: DatabaseUrl = None) -> None:
    """List every key (never the key or its hash)."""
    with _store(database_url) as store:
        keys = store.list()
    table = Table(title=f"API keys ({len(keys)}; times in UTC)")
    table.add_column("key id", no_wrap=True, min_width=24)
    for column in ("subject", "roles", "created", "expires", "last used", "revoked"):
        table.add_column(column, overflow="fold")
    for k in keys:
        table.add_row(
            k.key_id,
            k.subject,
            ", ".join(k.roles) or "-",
            _when(k.created_at),
            _when(k.expires_at),
            _when(k.last_used_at),
            f"{_when(k.revoked_at)} by {k.revoked_by or '-'}" if k.revoked_at else "no",
        )
    Console(soft_wrap=True).print(table, markup=False)


@apikeys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (from create or list).")],
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the audit trail.")],
    revoked_by: Annotated[
        str | None, typer.Option(help="Recorded as the actor; defaults to cli:<user>.")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key: its next use fails."""
    with _store(database_url) as store:
        try:
            done = store.revoke(key_id, revoked_by or _operator(), reason)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    if not done:
        raise _fail(f"no active API key with id {key_id!r}", code=1)
    Console().print(f"revoked {key_id}", markup=False, highlight=False)
