"""The keyring: data keys, their states, and an in-memory cache that keeps KMS off the hot path.

Data keys are random 256-bit keys stored *wrapped* by the KEK provider in
``soc2kit_data_keys``, so every replica sees the same keyring. Each key goes
through Tink's order of states::

    PENDING -> ACTIVE -> DECRYPT_ONLY -> RETIRED -> DESTROYED

A new key is added PENDING, checked readable from the table, then promoted in
one transaction that demotes the previous one, so at most one key per scope is
ACTIVE (a unique column enforces it). Other replicas pick the new key up on
their next refresh; until then they keep encrypting under the previous key,
which every replica can still decrypt. Ciphertexts name their key id, so a key
unknown to this process is loaded on demand, never found by trial decryption.

Scopes: ``""`` is the service-wide scope; any other scope is a data subject
(a customer, a tenant) whose key can be destroyed to crypto-shred its data.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from soc2kit.audit.trail import AuditTrail
from soc2kit.authn.principal import Principal
from soc2kit.crypto.aead import DataKey, FieldContext, decrypt_with_key, encrypt
from soc2kit.crypto.blind import BlindIndexKey
from soc2kit.crypto.errors import (
    CryptoError,
    KeyDestroyedError,
    KeyUnavailableError,
    UnknownKeyError,
)
from soc2kit.crypto.providers import KeyProvider
from soc2kit.db.schema import data_keys
from soc2kit.errors import ConfigurationError
from soc2kit.settings import Settings

log = logging.getLogger("soc2kit.crypto")

ENC = "enc"
BIDX = "bidx"
GLOBAL_SCOPE = ""
_KCV_LABEL = b"soc2kit:kcv:v1"
_CANARY = FieldContext(table="soc2kit", column="known-answer", tenant=None, row="0")
_MAX_SCOPE = 255
_PENDING_KEYS = "soc2kit.keys.pending"
_NONCE_BUDGET = 2**32  # hard stop: past it, random 96-bit nonces are no longer safe

Actor = Principal | str | None


class KeyState(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    DECRYPT_ONLY = "DECRYPT_ONLY"
    RETIRED = "RETIRED"
    DESTROYED = "DESTROYED"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What ``soc2kit keys list`` shows: never key material."""

    key_id: int
    purpose: str
    scope: str
    state: KeyState
    version: int
    kek_ref: str | None
    encryptions: int
    created_at: datetime
    activated_at: datetime | None

    @property
    def hex_id(self) -> str:
        return f"{self.key_id:08x}"


@dataclass(slots=True)
class _Cached:
    key: DataKey
    expires: float
    uses_left: int


def check_value(material: bytes) -> bytes:
    """A key check value: HMAC of a fixed label. Tells keys apart, reveals nothing of them."""
    return hmac.new(material, _KCV_LABEL, hashlib.sha256).digest()[:16]


def wrap_context(key_id: int, purpose: str, scope: str) -> dict[str, str]:
    """What a wrapped key is bound to: a wrapped key moved to another row fails to unwrap."""
    return {"soc2kit": "data-key", "key_id": f"{key_id:08x}", "purpose": purpose, "scope": scope}


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone=True columns.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Keyring:
    """Data keys for one service: lookup by id, the active key per scope, rotation, shredding."""

    def __init__(
        self,
        engine: Engine,
        provider: KeyProvider,
        settings: Settings,
        audit: AuditTrail,
    ) -> None:
        self.engine = engine
        self.provider = provider
        self._settings = settings
        self._audit = audit
        self._ttl = settings.encryption_key_cache_ttl_seconds
        self._max_uses = settings.encryption_key_cache_max_uses
        self._max_encryptions = settings.encryption_max_encryptions_per_key
        self._lock = threading.RLock()
        self._cache: dict[int, _Cached] = {}
        self._active: dict[tuple[str, str], int] = {}
        self._destroyed_scopes: set[str] = set()
        self._counts: dict[int, int] = {}  # encryptions not yet written to the table
        self._stored_counts: dict[int, int] = {}
        self._blind: tuple[BlindIndexKey, BlindIndexKey] | None = None
        self._blind_ids: tuple[int, int] = (0, 0)
        self._warned_async: set[str] = set()
        self._rolling: set[int] = set()
        self._quiet = threading.local()
        self.plaintext_reads: dict[tuple[str, str], int] = {}
        # Outside production the service-wide keys appear on first use; in
        # production they are generated deliberately (`soc2kit keys generate`).
        self._auto_global = not settings.is_production
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Keyring(provider={self.provider!r}, cached={len(self._cache)})"

    # start-up ------------------------------------------------------------------
    def load(self, *, create: bool) -> None:
        """Load the service-wide keys (creating them when ``create``), then check each one.

        Production passes ``create=False``: keys are generated deliberately with
        ``soc2kit keys generate``, and their absence refuses start-up.
        """
        for purpose in (ENC, BIDX):
            if self._read_active(purpose, GLOBAL_SCOPE) is None:
                if not create:
                    raise ConfigurationError(
                        "no active data key: run `soc2kit keys generate` before starting"
                    )
                self._create(purpose, GLOBAL_SCOPE, actor="system")
        self._quiet.active = True  # start-up runs inside the lifespan: no async warning
        try:
            self._refresh_active()
            active = self._active.get((ENC, GLOBAL_SCOPE))
            if active is not None:
                self._entry(active)  # unwrapped and checked now, not on first use
        finally:
            self._quiet.active = False
        self.known_answer_check()

    def reload(self) -> None:
        """Re-read the service-wide active keys (no creation, no rotation)."""
        self._refresh_active()

    def known_answer_check(self) -> None:
        """Encrypt and decrypt a canary under every cached key; refuse to run on a mismatch.

        The key check value was already compared when the key was unwrapped; this
        catches a broken cipher or a key that unwraps to the wrong bytes.
        """
        probe = b"\x01soc2kit known-answer check"
        for key_id in list(self._cache):
            key = self._entry(key_id).key
            blob = encrypt(key, probe, _CANARY)
            if decrypt_with_key(key, blob, _CANARY) != probe:  # pragma: no cover - broken AES
                raise KeyUnavailableError(f"known-answer check failed for key {key_id:08x}")

    # hot path --------------------------------------------------------------------
    def encryption_key(self, scope: str = GLOBAL_SCOPE, conn: Connection | None = None) -> DataKey:
        """The active data key for ``scope``; counts the use and rolls over at the limit.

        ``conn``: the caller's connection, if it is inside a write transaction (the
        ORM flush passes it), so a subject key first needed there can be created
        without waiting on that transaction's lock.
        """
        key_id = self._active.get((ENC, scope))
        if key_id is None:
            key_id = self._load_scope(scope, conn=conn)
        entry = self._entry(key_id)
        with self._lock:
            count = self._counts.get(key_id, 0) + 1
            self._counts[key_id] = count
            entry.uses_left -= 1
        used = count + self._stored_counts.get(key_id, 0)
        if used >= self._max_encryptions:
            # Random 96-bit nonces: roll over long before collisions become likely.
            # In the background: the caller may hold a transaction the rotation must
            # not wait for (SQLite's single write lock).
            self._schedule_rollover(scope, key_id)
            if used >= _NONCE_BUDGET:
                raise KeyUnavailableError(
                    f"data key {key_id:08x} used its whole nonce budget and its rollover has "
                    "not completed: refusing to encrypt"
                )
        return entry.key

    def _schedule_rollover(self, scope: str, key_id: int) -> None:
        with self._lock:
            if key_id in self._rolling:
                return
            self._rolling.add(key_id)

        def roll() -> None:
            try:
                log.info("data key %08x reached its encryption limit: rolling over", key_id)
                self.flush_counts()
                self.rotate(purpose=ENC, scope=scope, actor="system", reason="encryption limit")
            except Exception as exc:  # retried on the next use past the limit
                log.error("rollover of data key %08x failed: %s", key_id, type(exc).__name__)
            finally:
                with self._lock:
                    self._rolling.discard(key_id)

        threading.Thread(target=roll, name="soc2kit-key-rollover", daemon=True).start()

    def active_key_id(self, scope: str = GLOBAL_SCOPE) -> int:
        """The id of ``scope``'s active data key (loaded or created, not counted as a use)."""
        key_id = self._active.get((ENC, scope))
        return key_id if key_id is not None else self._load_scope(scope)

    def decryption_key(self, key_id: int) -> DataKey:
        """The data key ``key_id`` names (loaded on demand; destroyed keys raise)."""
        return self._entry(key_id).key

    def blind_keys(self) -> tuple[BlindIndexKey, BlindIndexKey]:
        """(active, previous) blind-index keys; previous is the active one when none rotated."""
        keys = self._blind
        if keys is None:
            if self._auto_global:
                self.generate()
            self._refresh_active()
            keys = self._blind
            if keys is None:
                raise KeyUnavailableError("no active blind-index key: run `soc2kit keys generate`")
        return keys

    def count_plaintext_read(self, table: str, column: str) -> None:
        with self._lock:
            self.plaintext_reads[(table, column)] = self.plaintext_reads.get((table, column), 0) + 1

    # cache -------------------------------------------------------------------------
    def _entry(self, key_id: int) -> _Cached:
        entry = self._cache.get(key_id)
        if entry is not None and entry.uses_left > 0 and entry.expires > time.monotonic():
            return entry
        return self._unwrap(key_id)

    def _unwrap(self, key_id: int) -> _Cached:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(data_keys).where(data_keys.c.key_id == key_id)).first()
        if row is None:
            raise UnknownKeyError(f"no data key with id {key_id:08x}")
        state = KeyState(row.state)
        if state is KeyState.DESTROYED or row.wrapped_key is None:
            self._forget(key_id)
            raise KeyDestroyedError(f"data key {key_id:08x} was destroyed")
        if state is KeyState.RETIRED:
            self._forget(key_id)
            raise UnknownKeyError(f"data key {key_id:08x} is retired")
        self._note_blocking(f"key {key_id:08x}")
        material = self.provider.unwrap(
            row.wrapped_key, wrap_context(key_id, row.purpose, row.scope)
        )
        if len(material) != 32 or not hmac.compare_digest(check_value(material), row.check_value):
            raise KeyUnavailableError(f"data key {key_id:08x} failed its key check value")
        entry = _Cached(DataKey(key_id, material), time.monotonic() + self._ttl, self._max_uses)
        with self._lock:
            self._cache[key_id] = entry
            self._stored_counts[key_id] = int(row.encryptions)
        return entry

    def _forget(self, key_id: int) -> None:
        with self._lock:
            self._cache.pop(key_id, None)
            for slot, active_id in list(self._active.items()):
                if active_id == key_id:
                    del self._active[slot]

    def _note_blocking(self, what: str) -> None:
        """Say so when a provider or database call runs on the event loop (AsyncSession)."""
        if getattr(self._quiet, "active", False):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        if what not in self._warned_async:
            self._warned_async.add(what)
            log.warning(
                "soc2kit loaded %s synchronously on the event loop (a cold key scope in an "
                "async session): prefetch with `await kit.keys.aprefetch([...])`",
                what,
            )

    # scopes ---------------------------------------------------------------------------
    def _read_active(self, purpose: str, scope: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(data_keys.c.key_id).where(
                    data_keys.c.active_scope == f"{purpose}:{scope}"
                )
            ).scalar_one_or_none()

    def _load_scope(
        self, scope: str, *, create: bool = True, conn: Connection | None = None
    ) -> int:
        """The active key id of a subject scope, created on first use."""
        pending = self._pending_in(conn)
        if pending is not None and scope in pending:
            return pending[scope]
        if scope in self._destroyed_scopes:
            raise KeyDestroyedError("this data subject's key was destroyed: its data is erased")
        _check_scope(scope)
        with self.engine.connect() as reader:
            states = set(
                reader.execute(
                    sa.select(data_keys.c.state).where(
                        data_keys.c.scope == scope, data_keys.c.purpose == ENC
                    )
                ).scalars()
            )
        if KeyState.DESTROYED in states:
            self._destroyed_scopes.add(scope)
            raise KeyDestroyedError("this data subject's key was destroyed: its data is erased")
        key_id = self._read_active(ENC, scope)
        if key_id is None:
            if not create or (scope == GLOBAL_SCOPE and not self._auto_global):
                raise KeyUnavailableError(
                    "no active data key: run `soc2kit keys generate`"
                    if scope == GLOBAL_SCOPE
                    else "no active data key for this scope"
                )
            self._note_blocking(f"scope {scope!r}")
            if pending is not None:
                # Created in the caller's SQLite transaction: known here until it commits.
                key_id = self._create(ENC, scope, actor="system", conn=conn)
                pending[scope] = key_id
                return key_id
            key_id = self._create(ENC, scope, actor="system")
        with self._lock:
            self._active[(ENC, scope)] = key_id
        return key_id

    def _pending_in(self, conn: Connection | None) -> dict[str, int] | None:
        """Keys created inside ``conn``'s current transaction (SQLite, same database only)."""
        if (
            conn is None
            or conn.dialect.name != "sqlite"
            or self.engine.dialect.name != "sqlite"
            or conn.engine.url != self.engine.url
            or not conn.in_transaction()
        ):
            return None
        transaction = conn.get_transaction()
        slot = conn.info.get(_PENDING_KEYS)
        if slot is None or slot[0] is not transaction:
            slot = (transaction, {})
            conn.info[_PENDING_KEYS] = slot
        return slot[1]

    def prefetch(self, scopes: Iterable[str]) -> None:
        """Load (or create) the active keys of ``scopes`` now, off the hot path."""
        for scope in scopes:
            key_id = self._active.get((ENC, scope)) or self._load_scope(scope)
            self._entry(key_id)

    async def aprefetch(self, scopes: Iterable[str]) -> None:
        """:meth:`prefetch` in a worker thread: call it before an async session needs a scope."""
        await anyio.to_thread.run_sync(self.prefetch, list(scopes))

    # lifecycle -----------------------------------------------------------------------
    def _create(
        self,
        purpose: str,
        scope: str,
        *,
        actor: Actor,
        state: KeyState = KeyState.ACTIVE,
        conn: Connection | None = None,
    ) -> int:
        """Generate, wrap and store a key; returns its id (or the concurrent winner's).

        With ``conn`` the key is written in the caller's transaction (SQLite, whose
        single write lock that transaction already holds): it commits with the data
        it encrypts, or disappears with it.
        """
        _check_scope(scope)
        if scope != GLOBAL_SCOPE:
            self._refuse_destroyed(scope)
        material = os.urandom(32)
        for _attempt in range(5):
            key_id = int.from_bytes(os.urandom(4), "big")
            if key_id == 0:
                continue
            wrapped = self.provider.wrap(material, wrap_context(key_id, purpose, scope))
            now = _now()
            active = state is KeyState.ACTIVE
            try:
                with self._transaction(conn) as tx:
                    version = 0
                    if purpose == BIDX:
                        top = tx.execute(
                            sa.select(sa.func.max(data_keys.c.version)).where(
                                data_keys.c.purpose == BIDX
                            )
                        ).scalar_one_or_none()
                        version = int(top or 0) + 1
                        if version > 255:
                            raise CryptoError("blind-index key versions are exhausted (255)")
                    tx.execute(
                        data_keys.insert().values(
                            key_id=key_id,
                            purpose=purpose,
                            scope=scope,
                            state=state.value,
                            active_scope=f"{purpose}:{scope}" if active else None,
                            version=version,
                            wrapped_key=wrapped.blob,
                            kek_ref=wrapped.kek_ref,
                            check_value=check_value(material),
                            encryptions=0,
                            created_at=now,
                            created_by=_actor_id(actor),
                            activated_at=now if active else None,
                        )
                    )
                    # Same transaction: no key without its audit event.
                    self._audit.record_in(
                        tx,
                        "crypto.key.created",
                        action="create",
                        outcome="success",
                        actor=actor,
                        resource_type="data_key",
                        resource_id=f"{key_id:08x}",
                        purpose=purpose,
                        key_scope="service" if scope == GLOBAL_SCOPE else "subject",
                        state=state.value,
                        kek=wrapped.kek_ref,
                    )
            except sa.exc.IntegrityError:
                winner = self._read_active(purpose, scope) if active else None
                if winner is not None:
                    return winner  # another replica created this scope's key first
                continue  # key id collision: draw again
            # Cached now: a key created in the caller's transaction is not yet
            # visible to the keyring's own connection.
            entry = _Cached(DataKey(key_id, material), time.monotonic() + self._ttl, self._max_uses)
            with self._lock:
                self._cache[key_id] = entry
                self._stored_counts.setdefault(key_id, 0)
            return key_id
        raise CryptoError("could not allocate a data key id")

    @contextmanager
    def _transaction(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is None:
            with self.engine.begin() as own:
                yield own
        else:
            with conn.begin_nested() if conn.dialect.name != "sqlite" else nullcontext():
                yield conn

    def _refuse_destroyed(self, scope: str) -> None:
        with self.engine.connect() as conn:
            destroyed = conn.execute(
                sa.select(sa.func.count()).where(
                    data_keys.c.scope == scope, data_keys.c.state == KeyState.DESTROYED.value
                )
            ).scalar_one()
        if destroyed:
            self._destroyed_scopes.add(scope)
            raise KeyDestroyedError("this data subject's key was destroyed: its data is erased")

    def generate(self, *, actor: Actor = "system") -> list[int]:
        """Create the service-wide keys that are missing (``soc2kit keys generate``)."""
        created = []
        for purpose in (ENC, BIDX):
            if self._read_active(purpose, GLOBAL_SCOPE) is None:
                created.append(self._create(purpose, GLOBAL_SCOPE, actor=actor))
        self._refresh_active()
        return created

    def rotate(
        self,
        *,
        purpose: str = ENC,
        scope: str = GLOBAL_SCOPE,
        actor: Actor = "system",
        reason: str | None = None,
    ) -> int:
        """Add a key PENDING, check it, promote it; the previous one becomes DECRYPT_ONLY."""
        if purpose == BIDX:
            with self.engine.connect() as conn:
                previous = conn.execute(
                    sa.select(sa.func.count()).where(
                        data_keys.c.purpose == BIDX,
                        data_keys.c.state == KeyState.DECRYPT_ONLY.value,
                    )
                ).scalar_one()
            if previous:
                # Lookups match the active and one previous index key: a second
                # rotation before re-indexing would make older rows unfindable.
                raise CryptoError(
                    "the previous blind-index key is still in use: run `soc2kit encryption "
                    "reencrypt` and retire it before rotating again"
                )
        new_id = self._create(purpose, scope, actor=actor, state=KeyState.PENDING)
        self._unwrap(new_id)  # readable from the table by anyone: the "distribute" step
        slot = f"{purpose}:{scope}"
        now = _now()
        try:
            with self.engine.begin() as conn:
                old = conn.execute(
                    sa.select(data_keys.c.key_id).where(data_keys.c.active_scope == slot)
                ).scalar_one_or_none()
                conn.execute(
                    data_keys.update()
                    .where(data_keys.c.active_scope == slot)
                    .values(
                        state=KeyState.DECRYPT_ONLY.value, active_scope=None, deactivated_at=now
                    )
                )
                promoted = conn.execute(
                    data_keys.update()
                    .where(
                        data_keys.c.key_id == new_id,
                        data_keys.c.state == KeyState.PENDING.value,
                    )
                    .values(state=KeyState.ACTIVE.value, active_scope=slot, activated_at=now)
                ).rowcount
                if promoted != 1:
                    raise CryptoError("the new key left PENDING before promotion")
                self._audit.record_in(
                    conn,
                    "crypto.key.rotated",
                    action="rotate",
                    outcome="success",
                    actor=actor,
                    resource_type="data_key",
                    resource_id=f"{new_id:08x}",
                    previous=None if old is None else f"{old:08x}",
                    purpose=purpose,
                    key_scope="service" if scope == GLOBAL_SCOPE else "subject",
                    reason=reason,
                )
        except sa.exc.IntegrityError:
            with self.engine.begin() as conn:
                conn.execute(
                    data_keys.update()
                    .where(data_keys.c.key_id == new_id)
                    .values(state=KeyState.RETIRED.value, retired_at=_now())
                )
            raise CryptoError("a concurrent rotation won: run the rotation again") from None
        self._refresh_active()
        if scope != GLOBAL_SCOPE:
            with self._lock:
                self._active[(purpose, scope)] = new_id
        return new_id

    def retire(self, key_id: int, *, remaining_rows: int, actor: Actor = "system") -> None:
        """DECRYPT_ONLY -> RETIRED, only once a verification counted zero rows under it."""
        if remaining_rows != 0:
            raise CryptoError(
                f"{remaining_rows} rows still use key {key_id:08x}: re-encrypt them first"
            )
        self._transition(key_id, KeyState.DECRYPT_ONLY, KeyState.RETIRED, "retired_at", actor)

    def destroy_key(self, key_id: int, *, actor: Actor = "system") -> None:
        """RETIRED -> DESTROYED: delete a retired key's wrapped material for good."""
        self._transition(
            key_id,
            KeyState.RETIRED,
            KeyState.DESTROYED,
            "destroyed_at",
            actor,
            wrapped_key=None,
            check_value=None,
            destroyed_by=_actor_id(actor),
        )

    def key_info(self, key_id: int) -> KeyInfo | None:
        for info in self.list_keys():
            if info.key_id == key_id:
                return info
        return None

    def _transition(
        self,
        key_id: int,
        source: KeyState,
        target: KeyState,
        stamp: str,
        actor: Actor,
        **values: Any,
    ) -> None:
        with self.engine.begin() as conn:
            changed = conn.execute(
                data_keys.update()
                .where(data_keys.c.key_id == key_id, data_keys.c.state == source.value)
                .values(state=target.value, **{stamp: _now()}, **values)
            ).rowcount
            if changed != 1:
                raise CryptoError(f"key {key_id:08x} is not {source.value}")
            self._audit.record_in(
                conn,
                f"crypto.key.{target.value.lower()}",
                action=target.value.lower(),
                outcome="success",
                actor=actor,
                resource_type="data_key",
                resource_id=f"{key_id:08x}",
            )
        self._forget(key_id)
        self._refresh_active()

    def destroy_subject(self, subject: str, *, actor: Actor, reason: str | None = None) -> int:
        """Crypto-shred ``subject``: delete its wrapped keys and leave a tombstone.

        Every value encrypted under the subject's keys becomes unrecoverable in
        every table and in old rows; new writes for the subject are refused.
        Returns how many keys were destroyed.
        """
        if not subject:
            raise CryptoError("destroying the service-wide scope would erase everything: refused")
        _check_scope(subject)
        now = _now()
        with self.engine.begin() as conn:
            destroyed = conn.execute(
                data_keys.update()
                .where(
                    data_keys.c.scope == subject,
                    data_keys.c.state != KeyState.DESTROYED.value,
                )
                .values(
                    state=KeyState.DESTROYED.value,
                    active_scope=None,
                    wrapped_key=None,
                    check_value=None,
                    destroyed_at=now,
                    destroyed_by=_actor_id(actor),
                )
            ).rowcount
            tombstone = conn.execute(
                sa.select(sa.func.count()).where(
                    data_keys.c.scope == subject, data_keys.c.state == KeyState.DESTROYED.value
                )
            ).scalar_one()
            if not tombstone:
                # Nothing was ever encrypted for it: still refuse future writes.
                conn.execute(
                    data_keys.insert().values(
                        key_id=int.from_bytes(os.urandom(4), "big") | 1,
                        purpose=ENC,
                        scope=subject,
                        state=KeyState.DESTROYED.value,
                        version=0,
                        encryptions=0,
                        created_at=now,
                        created_by=_actor_id(actor),
                        destroyed_at=now,
                        destroyed_by=_actor_id(actor),
                    )
                )
            self._audit.record_in(
                conn,
                "crypto.key.destroyed",
                action="destroy",
                outcome="success",
                actor=actor,
                resource_type="data_subject",
                resource_id=subject,
                keys_destroyed=destroyed,
                reason=reason,
            )
        with self._lock:
            self._destroyed_scopes.add(subject)
            for slot in [s for s in self._active if s[1] == subject]:
                self._cache.pop(self._active.pop(slot), None)
        self._evict_gone()
        return int(destroyed)

    def rewrap_all(self, *, actor: Actor = "system") -> int:
        """Re-wrap every stored data key under the provider's current KEK (no row rewrite)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    data_keys.c.key_id,
                    data_keys.c.purpose,
                    data_keys.c.scope,
                    data_keys.c.wrapped_key,
                ).where(data_keys.c.wrapped_key.is_not(None))
            ).all()
        count = 0
        for row in rows:
            context = wrap_context(row.key_id, row.purpose, row.scope)
            wrapped = self.provider.rewrap(row.wrapped_key, context)
            with self.engine.begin() as conn:
                count += conn.execute(
                    data_keys.update()
                    .where(
                        data_keys.c.key_id == row.key_id,
                        data_keys.c.wrapped_key == row.wrapped_key,
                    )
                    .values(wrapped_key=wrapped.blob, kek_ref=wrapped.kek_ref)
                ).rowcount
        with self.engine.begin() as conn:
            self._audit.record_in(
                conn,
                "crypto.kek.rewrapped",
                action="rewrap",
                outcome="success",
                actor=actor,
                resource_type="keyring",
                keys=count,
                kek=self.provider.describe().get("kek"),
            )
        return count

    def list_keys(self, *, scope: str | None = None) -> list[KeyInfo]:
        """Every key row (subject scopes included unless ``scope`` narrows it)."""
        self.flush_counts()
        query = sa.select(data_keys).order_by(data_keys.c.created_at, data_keys.c.key_id)
        if scope is not None:
            query = query.where(data_keys.c.scope == scope)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            KeyInfo(
                key_id=int(r.key_id),
                purpose=r.purpose,
                scope=r.scope,
                state=KeyState(r.state),
                version=int(r.version),
                kek_ref=r.kek_ref,
                encryptions=int(r.encryptions),
                created_at=_aware(r.created_at) or _now(),
                activated_at=_aware(r.activated_at),
            )
            for r in rows
        ]

    # refresh -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Write usage counts, follow other replicas' rotations and shredding, roll over by age."""
        self.flush_counts()
        self._refresh_active()
        self._evict_gone()
        max_age = timedelta(days=self._settings.encryption_key_max_age_days)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(data_keys.c.purpose, data_keys.c.scope, data_keys.c.activated_at).where(
                    data_keys.c.active_scope.is_not(None), data_keys.c.scope == GLOBAL_SCOPE
                )
            ).all()
        for row in rows:
            activated = _aware(row.activated_at)
            if activated is not None and _now() - activated > max_age:
                self.rotate(purpose=row.purpose, scope=row.scope, reason="maximum key age")

    def flush_counts(self) -> None:
        with self._lock:
            pending, self._counts = self._counts, {}
        if not pending:
            return
        with self.engine.begin() as conn:
            for key_id, n in pending.items():
                conn.execute(
                    data_keys.update()
                    .where(data_keys.c.key_id == key_id)
                    .values(encryptions=data_keys.c.encryptions + n)
                )
        with self._lock:
            for key_id, n in pending.items():
                self._stored_counts[key_id] = self._stored_counts.get(key_id, 0) + n

    def _refresh_active(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    data_keys.c.key_id,
                    data_keys.c.purpose,
                    data_keys.c.state,
                    data_keys.c.version,
                    data_keys.c.encryptions,
                ).where(
                    data_keys.c.scope == GLOBAL_SCOPE,
                    data_keys.c.state.in_([KeyState.ACTIVE.value, KeyState.DECRYPT_ONLY.value]),
                )
            ).all()
        active_enc = [r for r in rows if r.purpose == ENC and r.state == KeyState.ACTIVE.value]
        bidx = sorted(
            (r for r in rows if r.purpose == BIDX),
            key=lambda r: (r.state == KeyState.ACTIVE.value, r.version),
            reverse=True,
        )
        with self._lock:
            for r in rows:
                self._stored_counts[int(r.key_id)] = int(r.encryptions)
            # Subject scopes are re-read on their next use, so a rotation made by
            # another replica is followed within one refresh interval.
            for slot in [s for s in self._active if s[1] != GLOBAL_SCOPE]:
                del self._active[slot]
            if active_enc:
                self._active[(ENC, GLOBAL_SCOPE)] = int(active_enc[0].key_id)
            else:
                self._active.pop((ENC, GLOBAL_SCOPE), None)
        if bidx and bidx[0].state == KeyState.ACTIVE.value:
            ids = (int(bidx[0].key_id), int(bidx[1].key_id if len(bidx) > 1 else bidx[0].key_id))
            if ids != self._blind_ids or self._blind is None:
                first, second = (self._entry(i).key for i in ids)
                versions = (int(bidx[0].version), int(bidx[1 if len(bidx) > 1 else 0].version))
                self._blind = (
                    BlindIndexKey(versions[0], first.material),
                    BlindIndexKey(versions[1], second.material),
                )
                self._blind_ids = ids
        else:
            self._blind, self._blind_ids = None, (0, 0)

    def _evict_gone(self) -> None:
        """Drop cached keys another replica retired or destroyed, so shredding spreads."""
        cached = list(self._cache)
        gone: set[int] = set()
        for start in range(0, len(cached), 500):
            chunk = cached[start : start + 500]
            with self.engine.connect() as conn:
                gone.update(
                    int(k)
                    for k in conn.execute(
                        sa.select(data_keys.c.key_id).where(
                            data_keys.c.key_id.in_(chunk),
                            data_keys.c.state.in_(
                                [KeyState.RETIRED.value, KeyState.DESTROYED.value]
                            ),
                        )
                    ).scalars()
                )
        for key_id in gone:
            self._forget(key_id)
        if gone:
            with self._lock:
                self._destroyed_scopes.clear()  # re-read from the table on next use

    def start_refresh(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._refresh_loop, name="soc2kit-keyring-refresh", daemon=True
        )
        self._thread.start()

    def stop_refresh(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.flush_counts()
        except sa.exc.SQLAlchemyError:
            log.warning("could not write data key usage counts at shutdown")

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._settings.encryption_refresh_seconds):
            try:
                self.refresh()
            except Exception as exc:  # keep refreshing; the type only, messages may hold URLs
                log.error("keyring refresh failed: %s", type(exc).__name__)

    def readiness(self) -> str | None:
        """For /readyz: None when an active data key and blind-index key are loaded."""
        if (ENC, GLOBAL_SCOPE) not in self._active or self._blind is None:
            return "no active data key loaded"
        return None

    def describe(self) -> dict[str, Any]:
        """Evidence: provider, KEK reference, algorithm (no key material)."""
        return {
            **self.provider.describe(),
            "algorithm": "AES-256-GCM (format v1), HKDF-SHA256 subkeys",
            "blind_index": "HMAC-SHA256 truncated, versioned",
        }


def _check_scope(scope: str) -> None:
    if len(scope) > _MAX_SCOPE or not scope.isprintable():
        raise CryptoError("key scopes are at most 255 printable characters")


def _actor_id(actor: Actor) -> str | None:
    if isinstance(actor, Principal):
        return actor.subject
    return actor
