"""soc2kit's own tables (SQLAlchemy Core, so applications may use any ORM base).

The Alembic migrations in ``soc2kit/db/migrations`` create exactly these; a test
compares the migrated schema with this metadata so they cannot drift.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


audit_events = sa.Table(
    "soc2kit_audit_events",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("actor_id", sa.String(256), nullable=True),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("resource_type", sa.String(100), nullable=True),
    sa.Column("resource_id", sa.String(256), nullable=True),
    sa.Column("event", sa.Text(), nullable=False),
    _ts("sealed_at", nullable=True),
    sa.Index(None, "occurred_at"),
    sa.Index(None, "event_type"),
    sa.Index(None, "actor_id"),
    sa.Index(None, "request_id"),
)


# Access control (identity, policy, reviews) --------------------------------------


policy_grants = sa.Table(
    "soc2kit_policy_grants",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("role", sa.String(256), nullable=False),
    sa.Column("tenant", sa.String(256), nullable=False),
    sa.Column("resource", sa.String(256), nullable=False),
    sa.Column("action", sa.String(256), nullable=False),
    _ts("created_at"),
    sa.Column("created_by", sa.String(256), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.UniqueConstraint("role", "tenant", "resource", "action"),
)

role_assignments = sa.Table(
    "soc2kit_role_assignments",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("role", sa.String(256), nullable=False),
    sa.Column("tenant", sa.String(256), nullable=False),
    # "store" for ordinary assignments, "break_glass" for emergency grants.
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("granted_by", sa.String(256), nullable=True),
    sa.Column("approved_by", sa.String(256), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("ticket", sa.String(256), nullable=True),
    _ts("created_at"),
    _ts("expires_at", nullable=True),
    sa.UniqueConstraint("subject", "role", "tenant", "source"),
    sa.Index(None, "subject"),
)

role_inheritance = sa.Table(
    "soc2kit_role_inheritance",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("role", sa.String(256), nullable=False),
    sa.Column("parent", sa.String(256), nullable=False),
    _ts("created_at"),
    sa.Column("created_by", sa.String(256), nullable=True),
    sa.UniqueConstraint("role", "parent"),
)

sod_conflicts = sa.Table(
    "soc2kit_sod_conflicts",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("role_a", sa.String(256), nullable=False),
    sa.Column("role_b", sa.String(256), nullable=False),
    _ts("created_at"),
    sa.Column("created_by", sa.String(256), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.UniqueConstraint("role_a", "role_b"),
)

revoked_principals = sa.Table(
    "soc2kit_revoked_principals",
    metadata,
    sa.Column("subject", sa.String(256), primary_key=True),
    _ts("revoked_at"),
    sa.Column("revoked_by", sa.String(256), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
)

policy_revision = sa.Table(
    "soc2kit_policy_revision",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("revision", sa.BigInteger(), nullable=False),
    _ts("updated_at"),
)

subject_activity = sa.Table(
    "soc2kit_subject_activity",
    metadata,
    sa.Column("subject", sa.String(256), primary_key=True),
    sa.Column("auth_method", sa.String(16), nullable=False),
    sa.Column("token_roles", sa.Text(), nullable=True),  # JSON list seen in the last token
    _ts("first_seen_at"),
    _ts("last_seen_at"),
)

api_keys = sa.Table(
    "soc2kit_api_keys",
    metadata,
    # The public key id, also the prefix of the key the client holds.
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("roles", sa.Text(), nullable=False),  # JSON list of role names
    sa.Column("tenant", sa.String(256), nullable=True),
    # HMAC-SHA256 of the secret part under a server-side pepper; never the key.
    sa.Column("key_hash", sa.String(128), nullable=False),
    sa.Column("description", sa.Text(), nullable=True),
    _ts("created_at"),
    sa.Column("created_by", sa.String(256), nullable=True),
    _ts("expires_at"),
    _ts("revoked_at", nullable=True),
    sa.Column("revoked_by", sa.String(256), nullable=True),
    _ts("last_used_at", nullable=True),
    sa.Index(None, "subject"),
)


# Field encryption (keyring and job checkpoints) -----------------------------------

data_keys = sa.Table(
    "soc2kit_data_keys",
    metadata,
    # Random uint32, the id every ciphertext names in its header.
    sa.Column("key_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("purpose", sa.String(8), nullable=False),  # "enc" or "bidx"
    sa.Column("scope", sa.String(255), nullable=False),  # "" global, else a subject id
    sa.Column("state", sa.String(16), nullable=False),
    # "<purpose>:<scope>" while ACTIVE, else NULL: at most one active key per scope.
    sa.Column("active_scope", sa.String(270), nullable=True, unique=True),
    sa.Column("version", sa.Integer(), nullable=False),  # blind-index version byte
    sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),  # NULL once destroyed
    sa.Column("kek_ref", sa.String(512), nullable=True),
    # HMAC of a fixed label under the key: the known-answer check, reveals nothing.
    sa.Column("check_value", sa.LargeBinary(), nullable=True),
    sa.Column("encryptions", sa.BigInteger(), nullable=False),
    _ts("created_at"),
    sa.Column("created_by", sa.String(256), nullable=True),
    _ts("activated_at", nullable=True),
    _ts("deactivated_at", nullable=True),
    _ts("retired_at", nullable=True),
    _ts("destroyed_at", nullable=True),
    sa.Column("destroyed_by", sa.String(256), nullable=True),
    sa.Index(None, "scope"),
)

encryption_jobs = sa.Table(
    "soc2kit_encryption_jobs",
    metadata,
    sa.Column("job_id", sa.String(255), primary_key=True),  # "<mode>:<table>"
    sa.Column("mode", sa.String(32), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("last_pk", sa.Text(), nullable=True),  # JSON list, the checkpoint
    sa.Column("rows_scanned", sa.BigInteger(), nullable=False),
    sa.Column("rows_changed", sa.BigInteger(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # running, finished
    _ts("started_at"),
    _ts("updated_at"),
    _ts("finished_at", nullable=True),
    sa.Column("remaining_after", sa.BigInteger(), nullable=True),  # verification count
)


# Sealed audit log (inbox, Merkle tree, signed checkpoints) -------------------------

audit_inbox = sa.Table(
    "soc2kit_audit_inbox",
    metadata,
    # Writers only INSERT here; the sealer moves rows into soc2kit_audit_events.
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("actor_id", sa.String(256), nullable=True),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("resource_type", sa.String(100), nullable=True),
    sa.Column("resource_id", sa.String(256), nullable=True),
    sa.Column("event", sa.Text(), nullable=False),
)

audit_tree = sa.Table(
    "soc2kit_audit_tree",
    metadata,
    # Perfect subtrees of the RFC 9162 tree: level 0 holds the leaf hashes.
    sa.Column("level", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(), nullable=False),
)

audit_state = sa.Table(
    "soc2kit_audit_state",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("root", sa.LargeBinary(), nullable=False),
    sa.Column("frontier", sa.LargeBinary(), nullable=False),
    # The signed note for (size, root): moving the state needs the signing key.
    sa.Column("note", sa.Text(), nullable=True),
    _ts("updated_at"),
)

audit_checkpoints = sa.Table(
    "soc2kit_audit_checkpoints",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("root", sa.LargeBinary(), nullable=False),
    sa.Column("timestamp", sa.BigInteger(), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
    _ts("created_at"),
    sa.Index(None, "size"),
)

# Tables that only ever grow: UPDATE, DELETE (and TRUNCATE) raise in the database.
APPEND_ONLY_TABLES = ("soc2kit_audit_events", "soc2kit_audit_tree", "soc2kit_audit_checkpoints")
