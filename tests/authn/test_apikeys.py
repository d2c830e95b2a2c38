"""API keys on SQLite and PostgreSQL: format, storage, expiry, revocation, last use, audit."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from soc2kit import db
from soc2kit.audit.setup import build_trail
from soc2kit.audit.trail import AuditTrail
from soc2kit.authn.apikeys import API_KEY_ISSUER, ApiKeyInfo, ApiKeyStore
from soc2kit.authn.credentials import CredentialRejected
from soc2kit.errors import ConfigurationError
from soc2kit.settings import Settings

T0 = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
KEY_FORMAT = re.compile(r"s2k_[0-9a-f]{24}_[A-Za-z0-9_-]{43}")


def secret_of(key: str) -> str:
    return key[len("s2k_") + 24 + 1 :]  # the secret may itself contain "_"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Env:
    store: ApiKeyStore
    engine: Engine
    audit: AuditTrail
    settings: Settings
    clock: Clock

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM soc2kit_api_keys"))
            ]

    def audit_events(self) -> list[dict[str, Any]]:
        self.audit.flush()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT event FROM soc2kit_audit_events ORDER BY seq"))
            return [json.loads(r[0]) for r in rows]


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> Iterator[Env]:
    settings = Settings(environment="test", data_dir=tmp_path / "data", database_url=database_url)
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    audit = build_trail(settings, engine)
    clock = Clock()
    yield Env(ApiKeyStore(engine, settings, audit, clock=clock), engine, audit, settings, clock)
    audit.close()
    engine.dispose()


def test_a_created_key_verifies_to_its_principal(env: Env) -> None:
    key_id, key = env.store.create(
        "svc-billing",
        ["billing-writer", "reader"],
        timedelta(days=90),
        created_by="admin",
        description="billing job",
        tenant="acme",
    )
    assert KEY_FORMAT.fullmatch(key) and key.startswith(f"s2k_{key_id}_")
    p = env.store.verify(key)
    assert (p.subject, p.issuer, p.auth_method, p.token_id, p.tenant) == (
        "svc-billing",
        API_KEY_ISSUER,
        "api_key",
        key_id,
        "acme",
    )
    assert p.roles == frozenset({"billing-writer", "reader"})
    assert p.expires_at == int((T0 + timedelta(days=90)).timestamp())


def test_the_stored_row_never_contains_the_key(env: Env) -> None:
    key_id, key = env.store.create("svc", [], timedelta(days=1))
    secret = secret_of(key)
    [row] = env.rows()
    assert row["key_id"] == key_id  # the public id is stored, the secret is not
    text = json.dumps(row, default=str)
    assert key not in text and secret not in text
    assert row["key_hash"].startswith("hmac-sha256:")
    # Not a bare hash of the secret either: the pepper is in it.
    assert hashlib.sha256(secret.encode()).hexdigest() not in row["key_hash"]
    assert "key_hash" not in {f.name for f in fields(ApiKeyInfo)}


def test_keys_are_unique(env: Env) -> None:
    made = [env.store.create("svc", [], timedelta(hours=1)) for _ in range(20)]
    assert len({k for _, k in made}) == 20 and len({i for i, _ in made}) == 20


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "s2k_",
        "s2k_zzzz_abc",
        "s2k_" + "0" * 24 + "_" + "A" * 43,  # well-formed, unknown id
        "S2K_" + "0" * 24 + "_" + "A" * 43,
        "s2k_" + "0" * 24 + "_" + "A" * 42 + "=",
    ],
)
def test_malformed_and_unknown_keys_are_rejected(env: Env, presented: str) -> None:
    env.store.create("svc", [], timedelta(days=1))
    with pytest.raises(CredentialRejected):
        env.store.verify(presented)


def test_a_wrong_secret_for_a_real_key_id_is_rejected(env: Env) -> None:
    key_id, key = env.store.create("svc", [], timedelta(days=1))
    secret = secret_of(key)
    forged = f"s2k_{key_id}_{'B' if secret[0] != 'B' else 'C'}{secret[1:]}"
    with pytest.raises(CredentialRejected, match="does not match") as info:
        env.store.verify(forged)
    assert info.value.credential_id == key_id


def test_expired_keys_are_rejected(env: Env) -> None:
    _, key = env.store.create("svc", [], timedelta(hours=12))
    env.clock.now = T0 + timedelta(hours=12) - timedelta(seconds=1)
    env.store.verify(key)
    env.clock.now = T0 + timedelta(hours=12)
    with pytest.raises(CredentialRejected, match="expired"):
        env.store.verify(key)


def test_revoked_keys_are_rejected_and_the_revocation_is_audited(env: Env) -> None:
    key_id, key = env.store.create("svc", ["r"], timedelta(days=1), created_by="alice")
    env.store.verify(key)
    assert env.store.revoke(key_id, "bob", "leaked in a CI log")
    with pytest.raises(CredentialRejected, match="revoked") as info:
        env.store.verify(key)
    assert info.value.subject == "svc"
    assert not env.store.revoke(key_id, "bob", "again")  # already revoked
    assert not env.store.revoke("0" * 24, "bob", "unknown")
    with pytest.raises(ValueError):
        env.store.revoke(key_id, "bob", "  ")
    [info_row] = env.store.list()
    assert info_row.revoked_at == T0 and info_row.revoked_by == "bob"
    events = env.audit_events()
    created = next(e for e in events if e["event_type"] == "apikey.created")
    assert created["actor_id"] == "alice" and created["resource_id"] == key_id
    assert created["changes"]["subject"] == "svc" and created["changes"]["roles"] == ["r"]
    revoked = next(e for e in events if e["event_type"] == "apikey.revoked")
    assert revoked["actor_id"] == "bob" and revoked["reason"] == "leaked in a CI log"
    assert revoked["resource_id"] == key_id
    assert secret_of(key) not in json.dumps(events)


@pytest.mark.parametrize(
    "lifetime", [timedelta(days=365, seconds=1), timedelta(days=400), timedelta(0), timedelta(-1)]
)
def test_lifetimes_beyond_365_days_or_not_positive_are_refused(
    env: Env, lifetime: timedelta
) -> None:
    with pytest.raises(ValueError):
        env.store.create("svc", [], lifetime)
    assert env.rows() == []


def test_a_365_day_key_is_allowed(env: Env) -> None:
    env.store.create("svc", [], timedelta(days=365))
    assert len(env.rows()) == 1


@pytest.mark.parametrize(
    ("subject", "roles", "tenant"),
    [
        ("", [], None),
        ("a\nb", [], None),
        ("x" * 257, [], None),
        ("svc", [""], None),
        ("svc", ["ok", "bad\x00"], None),
        ("svc", [], ""),
    ],
)
def test_bad_names_are_refused(
    env: Env, subject: str, roles: list[str], tenant: str | None
) -> None:
    with pytest.raises(ValueError):
        env.store.create(subject, roles, timedelta(days=1), tenant=tenant)


def test_last_use_is_recorded_at_most_once_a_minute(env: Env) -> None:
    key_id, key = env.store.create("svc", [], timedelta(days=1))
    updates: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    sa.event.listen(env.engine, "before_cursor_execute", count)
    try:
        env.store.verify(key)
        assert env.store.get(key_id).last_used_at == T0  # type: ignore[union-attr]
        for seconds in (1, 30, 59):
            env.clock.now = T0 + timedelta(seconds=seconds)
            env.store.verify(key)
        assert len(updates) == 1  # one write for four uses
        env.clock.now = T0 + timedelta(seconds=61)
        env.store.verify(key)
        assert len(updates) == 2
        assert env.store.get(key_id).last_used_at == T0 + timedelta(seconds=61)  # type: ignore[union-attr]
    finally:
        sa.event.remove(env.engine, "before_cursor_execute", count)


def test_last_use_seen_by_another_store_is_not_rewritten(env: Env) -> None:
    # A second process (another replica) reads last_used_at and skips the write too.
    _, key = env.store.create("svc", [], timedelta(days=1))
    env.store.verify(key)
    other = ApiKeyStore(env.engine, env.settings, env.audit, clock=env.clock)
    updates: list[str] = []
    listener = lambda *a: updates.append(a[2]) if a[2].upper().startswith("UPDATE") else None  # noqa: E731
    sa.event.listen(env.engine, "before_cursor_execute", listener)
    try:
        env.clock.now = T0 + timedelta(seconds=10)
        other.verify(key)
    finally:
        sa.event.remove(env.engine, "before_cursor_execute", listener)
    assert updates == []


def test_list_shows_everything_but_the_secret(env: Env) -> None:
    k1, _ = env.store.create("svc-a", ["x"], timedelta(days=1), description="first")
    env.clock.now = T0 + timedelta(minutes=1)
    k2, _ = env.store.create("svc-b", [], timedelta(days=2))
    listed = env.store.list()
    assert [k.key_id for k in listed] == [k1, k2]
    assert listed[0].description == "first" and listed[0].roles == ("x",)
    assert listed[1].expires_at == T0 + timedelta(minutes=1, days=2)
    assert all(k.expires_at.tzinfo is not None for k in listed)


def test_the_development_pepper_is_stable_and_private(env: Env) -> None:
    _, key = env.store.create("svc", [], timedelta(days=1))
    pepper = env.settings.data_dir / "api-key-pepper"
    assert pepper.stat().st_mode & 0o077 == 0
    again = ApiKeyStore(env.engine, env.settings, env.audit, clock=env.clock)
    assert again.verify(key).subject == "svc"  # same data_dir, same pepper


def test_a_different_pepper_invalidates_every_key(env: Env, tmp_path: Path) -> None:
    _, key = env.store.create("svc", [], timedelta(days=1))
    other_settings = Settings(
        environment="test", data_dir=tmp_path / "other", api_key_pepper="p" * 32
    )
    other = ApiKeyStore(env.engine, other_settings, env.audit, clock=env.clock)
    with pytest.raises(CredentialRejected, match="does not match"):
        other.verify(key)


def test_a_configured_pepper_is_used_and_must_be_long(tmp_path: Path, sqlite_url: str) -> None:
    engine = db.create_engine(sqlite_url)
    db.upgrade(engine)
    settings = Settings(environment="test", data_dir=tmp_path / "d", api_key_pepper="q" * 32)
    audit = build_trail(settings, engine)
    try:
        store = ApiKeyStore(engine, settings, audit)
        _, key = store.create("svc", [], timedelta(days=1))
        assert store.verify(key).subject == "svc"
        assert not (tmp_path / "d" / "api-key-pepper").exists()
        with pytest.raises(ConfigurationError, match="32 bytes"):
            ApiKeyStore(engine, Settings(environment="test", api_key_pepper="short"), audit)
        with pytest.raises(ConfigurationError, match="production"):
            ApiKeyStore(engine, Settings(environment="production"), audit)
    finally:
        audit.close()
        engine.dispose()


def test_an_unreachable_store_rejects(tmp_path: Path) -> None:
    settings = Settings(environment="test", data_dir=tmp_path)
    engine = db.create_engine(
        "postgresql://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    audit = build_trail(settings, engine)
    try:
        store = ApiKeyStore(engine, settings, audit)
        with pytest.raises(CredentialRejected, match="unavailable"):
            store.verify("s2k_" + "0" * 24 + "_" + "A" * 43)
    finally:
        audit.close(timeout=0.1)
        engine.dispose()
