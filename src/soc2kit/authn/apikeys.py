"""API keys for service accounts, stored in ``soc2kit_api_keys``.

A key reads ``s2k_<key id>_<secret>``: the prefix lets secret scanners spot a
leaked key, the key id (public, also the table's primary key) names it in
listings and audit events, and the secret is 32 random bytes. Only
HMAC-SHA256 of the key id and secret under a server-side pepper is stored, so
a copy of the table does not let anyone use or brute-force a key. Every key
expires (within 365 days); a revoked, expired, unknown or wrong key fails the
same way. Creation and revocation are audit events; failed uses are audited
by the caller (``authenticate()`` records ``authn.failure`` with the key id).
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from soc2kit.authn.credentials import API_KEY_PREFIX, CredentialRejected
from soc2kit.authn.principal import Principal
from soc2kit.db.schema import api_keys
from soc2kit.errors import ConfigurationError
from soc2kit.settings import Settings

if TYPE_CHECKING:
    from soc2kit.audit.trail import AuditTrail

log = logging.getLogger("soc2kit.authn.apikeys")

API_KEY_ISSUER = "soc2kit:api-key"
"""``Principal.issuer`` of every principal authenticated by an API key."""

MAX_LIFETIME = timedelta(days=365)
LAST_USE_INTERVAL_SECONDS = 60.0
PEPPER_MIN_BYTES = 32
_KEY_ID_BYTES = 12
_SECRET_BYTES = 32
_KEY_PATTERN = re.compile(
    re.escape(API_KEY_PREFIX) + rf"([0-9a-f]{{{_KEY_ID_BYTES * 2}}})_([A-Za-z0-9_-]{{43}})"
)
_HASH_SCHEME = "hmac-sha256:"
_PEPPER_FILE = "api-key-pepper"
_MAX_NOTED = 10_000


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """One key as listed: everything but the secret and its hash."""

    key_id: str
    subject: str
    roles: tuple[str, ...]
    tenant: str | None
    description: str | None
    created_at: datetime
    created_by: str | None
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ApiKeyStore:
    """Create, list, revoke and verify API keys."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        audit: AuditTrail,
        *,
        clock: Callable[[], datetime] = _utcnow,
        last_use_interval: float = LAST_USE_INTERVAL_SECONDS,
    ) -> None:
        pepper = settings.api_key_pepper
        if pepper is not None and len(pepper.get_secret_value().encode()) < PEPPER_MIN_BYTES:
            raise ConfigurationError(f"api_key_pepper must be at least {PEPPER_MIN_BYTES} bytes")
        if pepper is None and settings.is_production:
            raise ConfigurationError("api_key_pepper is required in production")
        self._engine = engine
        self._settings = settings
        self._audit = audit
        self._clock = clock
        self._interval = timedelta(seconds=last_use_interval)
        self._lock = threading.Lock()
        self._pepper: bytes | None = None
        self._noted: dict[str, datetime] = {}

    # lifecycle ---------------------------------------------------------------------
    def create(
        self,
        subject: str,
        roles: Iterable[str],
        expires_in: timedelta,
        created_by: str | None = None,
        description: str | None = None,
        tenant: str | None = None,
    ) -> tuple[str, str]:
        """Store a new key; returns ``(key_id, key)``. The key is never retrievable again."""
        _name(subject, "subject")
        role_list = sorted({_name(r, "role") for r in roles})
        if tenant is not None:
            _name(tenant, "tenant")
        if description is not None and len(description) > 1000:
            raise ValueError("description must be at most 1000 characters")
        if not isinstance(expires_in, timedelta) or expires_in <= timedelta(0):
            raise ValueError("expires_in must be a positive duration")
        if expires_in > MAX_LIFETIME:
            raise ValueError("API keys must expire within 365 days")
        key_id = secrets.token_hex(_KEY_ID_BYTES)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(_SECRET_BYTES)).rstrip(b"=").decode()
        now = self._clock()
        expires_at = now + expires_in
        with self._audit.transaction(self._engine) as conn:
            conn.execute(
                sa.insert(api_keys).values(
                    key_id=key_id,
                    subject=subject,
                    roles=json.dumps(role_list),
                    tenant=tenant,
                    key_hash=self._hash(key_id, secret),
                    description=description,
                    created_at=now,
                    created_by=created_by,
                    expires_at=expires_at,
                )
            )
            # In the key's own transaction: no key exists without its record.
            self._audit.record_in(
                conn,
                "apikey.created",
                action="create",
                outcome="success",
                actor=created_by or "system",
                resource_type="api_key",
                resource_id=key_id,
                changes={
                    "subject": subject,
                    "roles": role_list,
                    "tenant": tenant,
                    "expires_at": expires_at,
                    "description": description,
                },
            )
        return key_id, f"{API_KEY_PREFIX}{key_id}_{secret}"

    def revoke(self, key_id: str, revoked_by: str | None, reason: str) -> bool:
        """Revoke a key for good; False when no such active key exists."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("revoking a key needs a reason")
        now = self._clock()
        with self._audit.transaction(self._engine) as conn:
            row = conn.execute(
                sa.select(api_keys.c.subject).where(
                    api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None)
                )
            ).first()
            if row is None:
                return False
            conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_by=revoked_by)
            )
            self._audit.record_in(
                conn,
                "apikey.revoked",
                action="revoke",
                outcome="success",
                actor=revoked_by or "system",
                resource_type="api_key",
                resource_id=key_id,
                reason=reason,
                changes={"subject": row.subject, "revoked": {"old": False, "new": True}},
            )
        return True

    def list(self) -> builtins.list[ApiKeyInfo]:
        """Every key, oldest first (revoked and expired ones included)."""
        columns = [c for c in api_keys.c if c.name != "key_hash"]
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(*columns).order_by(api_keys.c.created_at, api_keys.c.key_id)
            ).all()
        return [_info(row._mapping) for row in rows]

    def get(self, key_id: str) -> ApiKeyInfo | None:
        columns = [c for c in api_keys.c if c.name != "key_hash"]
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(*columns).where(api_keys.c.key_id == key_id)).first()
        return None if row is None else _info(row._mapping)

    # verification ------------------------------------------------------------------
    def verify(self, presented: str) -> Principal:
        """The principal of a valid key; raises CredentialRejected (generic to clients).

        Blocking (one indexed SELECT, and at most one UPDATE per key per
        minute for ``last_used_at``): async callers run it in a worker thread.
        """
        match = _KEY_PATTERN.fullmatch(presented)
        if match is None:
            raise CredentialRejected("malformed API key", auth_method="api_key")
        key_id, secret = match.groups()
        expected = self._hash(key_id, secret)

        def reject(reason: str, subject: str | None = None) -> CredentialRejected:
            return CredentialRejected(
                reason, auth_method="api_key", subject=subject, credential_id=key_id
            )

        try:
            with self._engine.connect() as conn:
                row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("API key lookup failed (%s)", type(exc).__name__)
            raise reject("API key store unavailable") from None
        stored = row.key_hash if row is not None else _HASH_SCHEME + "0" * 64
        # Compared even for an unknown id, so both paths cost the same.
        matches = hmac.compare_digest(stored.encode(), expected.encode())
        if row is None:
            raise reject("unknown API key")
        if not matches:
            raise reject("API key secret does not match")
        if row.revoked_at is not None:
            raise reject("API key revoked", row.subject)
        now = self._clock()
        expires_at = _aware(row.expires_at)
        if now >= expires_at:
            raise reject("API key expired", row.subject)
        try:
            roles = json.loads(row.roles)
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise ValueError("roles")
        except ValueError:
            raise reject("API key record is corrupt", row.subject) from None
        self._note_use(key_id, row.last_used_at, now)
        return Principal(
            subject=row.subject,
            issuer=API_KEY_ISSUER,
            roles=frozenset(roles),
            tenant=row.tenant,
            auth_method="api_key",
            token_id=key_id,
            expires_at=int(expires_at.timestamp()),
        )

    def _note_use(self, key_id: str, last_used_at: datetime | None, now: datetime) -> None:
        """Record ``last_used_at``, at most once per key per interval (not a write per request)."""
        if last_used_at is not None and now - _aware(last_used_at) < self._interval:
            return
        with self._lock:
            noted = self._noted.get(key_id)
            if noted is not None and now - noted < self._interval:
                return
            if len(self._noted) >= _MAX_NOTED:
                self._noted = {k: t for k, t in self._noted.items() if now - t < self._interval}
            self._noted[key_id] = now
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.update(api_keys)
                    .where(
                        api_keys.c.key_id == key_id,
                        sa.or_(
                            api_keys.c.last_used_at.is_(None),
                            api_keys.c.last_used_at < now - self._interval,
                        ),
                    )
                    .values(last_used_at=now)
                )
        except sa.exc.SQLAlchemyError as exc:
            # Evidence of use, not a control: a failed write must not fail the request.
            log.warning("could not record API key use (%s)", type(exc).__name__)

    # pepper ------------------------------------------------------------------------
    def _hash(self, key_id: str, secret: str) -> str:
        digest = hmac.new(self._pepper_bytes(), f"{key_id}.{secret}".encode(), hashlib.sha256)
        return _HASH_SCHEME + digest.hexdigest()

    def _pepper_bytes(self) -> bytes:
        pepper = self._pepper
        if pepper is None:
            with self._lock:
                if self._pepper is None:
                    configured = self._settings.api_key_pepper
                    self._pepper = (
                        configured.get_secret_value().encode()
                        if configured is not None
                        else _dev_pepper(Path(self._settings.data_dir))
                    )
                pepper = self._pepper
        return pepper


def _dev_pepper(data_dir: Path) -> bytes:
    """A stable development pepper under ``data_dir`` (0600), created on first use."""
    path = data_dir / _PEPPER_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secrets.token_hex(32))
    value = path.read_text("utf-8").strip()
    if len(value) < 2 * PEPPER_MIN_BYTES:
        raise ConfigurationError(f"the development API key pepper in {_PEPPER_FILE} is too short")
    return value.encode()


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 256 or not value.isprintable():
        raise ValueError(f"{what} must be 1-256 printable characters")
    return value


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; soc2kit stores UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _info(row: Any) -> ApiKeyInfo:
    try:
        roles = tuple(json.loads(row["roles"]))
    except ValueError:
        roles = ()
    return ApiKeyInfo(
        key_id=row["key_id"],
        subject=row["subject"],
        roles=roles,
        tenant=row["tenant"],
        description=row["description"],
        created_at=_aware(row["created_at"]),
        created_by=row["created_by"],
        expires_at=_aware(row["expires_at"]),
        revoked_at=_aware(row["revoked_at"]) if row["revoked_at"] is not None else None,
        revoked_by=row["revoked_by"],
        last_used_at=_aware(row["last_used_at"]) if row["last_used_at"] is not None else None,
    )
