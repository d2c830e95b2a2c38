"""``soc2kit keys`` and ``soc2kit encryption``: the keyring and the jobs on encrypted data.

Every key event is an audit event, written before the command exits. Listings
never show key material. Long jobs draw a progress bar (rows done, remaining,
ETA) on stderr and print their result on stdout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from soc2kit.cli.apikeys import DatabaseUrl, _fail, _operator
from soc2kit.crypto.errors import CryptoError

keys_app = typer.Typer(help="Field-encryption data keys (the keyring).", no_args_is_help=True)
encryption_app = typer.Typer(help="Jobs on encrypted columns.", no_args_is_help=True)

Models = Annotated[
    list[str],
    typer.Option("--model", help="A model with Encrypted columns, as module:Class; repeatable."),
]


@dataclass
class _Context:
    keyring: Any
    encryption: Any
    audit: Any
    engine: Any


@contextmanager
def _keyring(database_url: str | None, *, load: bool = True) -> Iterator[_Context]:
    """A keyring on the configured database and KEK; tables upgraded when auto_migrate allows."""
    from soc2kit import db
    from soc2kit.audit.setup import build_trail
    from soc2kit.crypto.keyring import Keyring
    from soc2kit.crypto.service import FieldEncryption
    from soc2kit.crypto.setup import build_provider
    from soc2kit.settings import Settings

    settings = Settings()
    provider = build_provider(settings)  # a missing KEK is the first thing to report
    engine = db.create_engine(database_url or settings.database_url)
    audit = build_trail(settings, engine)
    try:
        if settings.migrate_on_install:
            db.upgrade(engine)
        keyring = Keyring(engine, provider, settings, audit)
        if load:
            keyring.reload()
        yield _Context(keyring, FieldEncryption(keyring), audit, engine)
        keyring.flush_counts()
    finally:
        try:
            audit.close()  # the key events are written before the command ends
        finally:
            engine.dispose()


def _models(refs: list[str]) -> list[type[Any]]:
    from soc2kit.cli.loader import load_object

    if not refs:
        raise _fail("name at least one --model module:Class")
    import sqlalchemy as sa

    from soc2kit.crypto.orm import _spec

    models = [load_object(ref) for ref in refs]
    for ref, model in zip(refs, models, strict=True):
        try:
            mapper = sa.inspect(model) if isinstance(model, type) else None
        except sa.exc.NoInspectionAvailable:
            mapper = None
        if mapper is None or not hasattr(mapper, "class_manager"):
            raise _fail(f"{ref} is not a mapped SQLAlchemy model")
        if _spec(mapper) is None:
            raise _fail(f"{ref} has no Encrypted columns")
    return models


def _key_id(text: str) -> int:
    if len(text) != 8 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise _fail(f"key ids are 8 hex digits, not {text!r}")
    value = int(text, 16)
    if value == 0:
        raise _fail(f"key ids are 8 hex digits, not {text!r}")
    return value


def _age(created: datetime) -> str:
    days = (datetime.now(UTC) - created).days
    return f"{days}d"


# keys ------------------------------------------------------------------------------------


@keys_app.command("generate")
def generate(database_url: DatabaseUrl = None) -> None:
    """Create the service-wide data and blind-index keys if they do not exist yet."""
    with _keyring(database_url, load=False) as ctx:
        created = ctx.keyring.generate(actor=_operator())
    if created:
        Console().print("created keys " + ", ".join(f"{k:08x}" for k in created), markup=False)
    else:
        Console().print("the service-wide keys already exist; nothing created", markup=False)


@keys_app.command("list")
def list_keys(
    subject: Annotated[str | None, typer.Option(help="Only this data subject's keys.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Keys with scope, state, age and encryptions (never key material)."""
    with _keyring(database_url, load=False) as ctx:
        keys = ctx.keyring.list_keys(scope=subject)
    table = Table(title=f"{len(keys)} data key(s)")
    for name in ("id", "purpose", "scope", "state", "version", "age", "encryptions", "kek"):
        table.add_column(name)
    for key in keys:
        table.add_row(
            key.hex_id,
            key.purpose,
            "service" if key.scope == "" else f"subject:{key.scope}",
            key.state.value,
            str(key.version) if key.purpose == "bidx" else "-",
            _age(key.created_at),
            str(key.encryptions),
            key.kek_ref or "-",
        )
    Console(width=160).print(table)


@keys_app.command("rotate")
def rotate(
    blind_index: Annotated[
        bool, typer.Option("--blind-index", help="Rotate the blind-index key instead.")
    ] = False,
    subject: Annotated[str | None, typer.Option(help="Rotate one data subject's key.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (recorded in the audit trail).")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Make a new active key; the previous one stays DECRYPT_ONLY until re-encryption."""
    with _keyring(database_url) as ctx:
        new_id = ctx.keyring.rotate(
            purpose="bidx" if blind_index else "enc",
            scope=subject or "",
            actor=_operator(),
            reason=reason,
        )
    Console().print(
        f"key {new_id:08x} is active; run `soc2kit encryption reencrypt` to move old rows",
        markup=False,
    )


@keys_app.command("rewrap")
def rewrap(database_url: DatabaseUrl = None) -> None:
    """Re-wrap every data key under the current KEK (no row is rewritten)."""
    with _keyring(database_url, load=False) as ctx:
        count = ctx.keyring.rewrap_all(actor=_operator())
        kek = ctx.keyring.provider.describe().get("kek")
    Console().print(f"re-wrapped {count} key(s) under {kek}", markup=False)


@keys_app.command("retire")
def retire(
    key_id: Annotated[str, typer.Argument(help="The key id (8 hex digits).")],
    model: Models,
    database_url: DatabaseUrl = None,
) -> None:
    """Retire a DECRYPT_ONLY key once no row of the named models uses it."""
    target = _key_id(key_id)
    models = _models(model)
    with _keyring(database_url) as ctx:
        try:
            ctx.encryption.retire(target, models, actor=_operator())
        except CryptoError as exc:
            raise _fail(str(exc)) from None
    Console().print(f"key {target:08x} retired", markup=False)


@keys_app.command("destroy")
def destroy(
    subject: Annotated[
        str | None, typer.Option("--subject", help="The data subject to erase.")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="A RETIRED key to delete for good.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (recorded in the audit trail).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Crypto-shred a data subject (--subject), or destroy a retired key (--key)."""
    if (subject is None) == (key is None):
        raise _fail("give exactly one of --subject or --key")
    if key is not None:
        target = _key_id(key)
        if not yes and not typer.confirm(f"Destroy retired key {target:08x} for good?"):
            raise _fail("not confirmed; nothing destroyed", code=1)
        with _keyring(database_url, load=False) as ctx:
            try:
                ctx.keyring.destroy_key(target, actor=_operator())
            except CryptoError as exc:
                raise _fail(str(exc)) from None
        Console().print(f"key {target:08x} destroyed", markup=False)
        return
    assert subject is not None
    if not yes and not typer.confirm(
        f"Destroy every key of subject {subject!r}? Its encrypted data becomes unrecoverable"
    ):
        raise _fail("not confirmed; nothing destroyed", code=1)
    with _keyring(database_url, load=False) as ctx:
        try:
            count = ctx.keyring.destroy_subject(subject, actor=_operator(), reason=reason)
        except CryptoError as exc:
            raise _fail(str(exc)) from None
    Console().print(
        f"destroyed {count} key(s) of subject {subject}; a tombstone refuses new writes "
        "(remember: backups of soc2kit_data_keys must expire too)",
        markup=False,
    )


# encryption jobs --------------------------------------------------------------------------


def _run_job(
    mode: str,
    model: list[str],
    batch_size: int,
    rate: float | None,
    dry_run: bool,
    restart: bool,
    max_batches: int | None,
    database_url: str | None,
    data_url: str | None,
) -> None:
    from soc2kit import db

    models = _models(model)
    err = Console(stderr=True)
    data_engine = db.create_engine(data_url) if data_url else None
    with _keyring(database_url) as ctx:
        for cls in models:
            run = (
                ctx.encryption.reencrypt if mode == "reencrypt" else ctx.encryption.encrypt_existing
            )
            with Progress(
                TextColumn(f"{mode} {cls.__name__}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=err,
                transient=False,
                disable=dry_run,
            ) as bar:
                task = bar.add_task(mode, total=None)

                def progress(done: int, total: int, *, _task: Any = task, _bar: Any = bar) -> None:
                    _bar.update(_task, completed=done, total=total)

                try:
                    result = run(
                        cls,
                        batch_size=batch_size,
                        rows_per_second=rate,
                        dry_run=dry_run,
                        restart=restart,
                        max_batches=max_batches,
                        progress=progress,
                        actor=_operator(),
                        engine=data_engine,
                    )
                except CryptoError as exc:
                    raise _fail(str(exc)) from None
            if dry_run:
                Console().print(
                    f"{cls.__name__}: {result.remaining} of {result.scanned} rows need {mode} "
                    "(dry run: nothing written)",
                    markup=False,
                )
            elif result.finished:
                resumed = " (resumed)" if result.resumed_from is not None else ""
                Console().print(
                    f"{cls.__name__}: {result.changed} rows rewritten, {result.scanned} scanned"
                    f"{resumed} in {result.seconds:.1f}s; verification: {result.remaining} rows "
                    "left",
                    markup=False,
                )
                if result.remaining:
                    raise typer.Exit(1)
            else:
                Console().print(
                    f"{cls.__name__}: stopped after {result.scanned} rows; run again to resume",
                    markup=False,
                )


_BatchSize = Annotated[int, typer.Option(help="Rows per batch.", min=1, max=100_000)]
_Rate = Annotated[
    float | None, typer.Option("--rate", help="At most this many rows per second.", min=0.001)
]
_DryRun = Annotated[bool, typer.Option("--dry-run", help="Count the rows; write nothing.")]
_Restart = Annotated[bool, typer.Option("--restart", help="Ignore a checkpoint; start over.")]
_MaxBatches = Annotated[
    int | None, typer.Option("--max-batches", help="Stop after this many batches.", min=1)
]
_DataUrl = Annotated[
    str | None,
    typer.Option("--data-url", help="The models' database, when not soc2kit's own."),
]


@encryption_app.command("reencrypt")
def reencrypt(
    model: Models,
    batch_size: _BatchSize = 1000,
    rate: _Rate = None,
    dry_run: _DryRun = False,
    restart: _Restart = False,
    max_batches: _MaxBatches = None,
    database_url: DatabaseUrl = None,
    data_url: _DataUrl = None,
) -> None:
    """Rewrite rows still on old keys under the active key (resumable; verified at the end)."""
    _run_job(
        "reencrypt", model, batch_size, rate, dry_run, restart, max_batches, database_url, data_url
    )


@encryption_app.command("encrypt-existing")
def encrypt_existing(
    model: Models,
    batch_size: _BatchSize = 1000,
    rate: _Rate = None,
    dry_run: _DryRun = False,
    restart: _Restart = False,
    max_batches: _MaxBatches = None,
    database_url: DatabaseUrl = None,
    data_url: _DataUrl = None,
) -> None:
    """Encrypt plaintext left in encrypted columns and fill their blind indexes."""
    _run_job(
        "encrypt-existing",
        model,
        batch_size,
        rate,
        dry_run,
        restart,
        max_batches,
        database_url,
        data_url,
    )


@encryption_app.command("status")
def status(model: Models, database_url: DatabaseUrl = None, data_url: _DataUrl = None) -> None:
    """Per encrypted column: rows per key id, rows on inactive keys, plaintext left."""
    from soc2kit import db

    models = _models(model)
    data_engine = db.create_engine(data_url) if data_url else None
    with _keyring(database_url) as ctx:
        rows = [s for cls in models for s in ctx.encryption.status(cls, engine=data_engine)]
        active = {k.hex_id for k in ctx.keyring.list_keys() if k.state.value == "ACTIVE"}
    table = Table(title="Encrypted columns")
    for name in ("model", "column", "rows per key id", "old keys", "plaintext", "null", "bidx"):
        table.add_column(name)
    for s in rows:
        per_key = ", ".join(
            f"{k}{'*' if k in active else ''}: {n}" for k, n in sorted(s.rows_by_key.items())
        )
        table.add_row(
            s.model,
            f"{s.table}.{s.column}",
            per_key or "-",
            str(s.on_inactive_keys),
            str(s.plaintext),
            str(s.null),
            f"{s.stale_blind_index} stale" if s.stale_blind_index else "ok",
        )
    Console(width=160).print(table)
    Console().print("* = active key", markup=False)
