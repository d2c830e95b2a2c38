"""Building the audit trail from settings: sink, sealer, signer, anchor store."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from soc2kit.audit.checkpoints import Anchor, DirectoryAnchor, Signer
from soc2kit.audit.sealer import Sealer
from soc2kit.audit.sink import SqlAuditSink
from soc2kit.audit.trail import AuditTrail
from soc2kit.errors import ConfigurationError
from soc2kit.settings import Settings


def build_signer(settings: Settings) -> Signer:
    """The checkpoint signing key; the generated development key outside production only."""
    name = settings.audit_signing_key_name or settings.service_name
    if settings.audit_signing_key_file is not None:
        signer = Signer.from_file(settings.audit_signing_key_file)
    elif settings.audit_signing_key is not None:
        signer = Signer.from_seed(name, settings.audit_signing_key.get_secret_value())
    elif settings.is_production:
        raise ConfigurationError("no audit signing key: set audit_signing_key")
    else:
        signer = Signer.development_key(settings.data_dir, name)
    if settings.is_production and signer.development:
        raise ConfigurationError("the development audit signing key is refused in production")
    return signer


def build_anchor(settings: Settings, *, check: bool = True) -> Anchor | None:
    """The anchor store: an S3 bucket with Object Lock, or a directory."""
    if settings.audit_anchor_s3_bucket is not None:
        from soc2kit.audit.s3anchor import S3ObjectLockAnchor  # boto3: the aws extra

        anchor = S3ObjectLockAnchor(
            settings.audit_anchor_s3_bucket,
            prefix=settings.audit_anchor_s3_prefix,
            region_name=settings.audit_anchor_s3_region,
            endpoint_url=settings.audit_anchor_s3_endpoint_url,
            retention_days=settings.audit_anchor_s3_retention_days,
        )
        if check:
            anchor.check()  # a bucket without Object Lock fails at start-up, not silently
        return anchor
    path = settings.audit_anchor_path
    return DirectoryAnchor(path) if path is not None else None


def build_trail(settings: Settings, engine: Engine) -> AuditTrail:
    """An audit trail writing to the inbox on ``engine``, with a sealer for its log."""
    sealer = Sealer(
        engine,
        build_signer(settings),
        origin=settings.audit_origin,
        anchor=build_anchor(settings),
        interval=settings.audit_seal_interval_seconds,
        checkpoint_interval=settings.audit_checkpoint_interval_seconds,
        checkpoint_every=settings.audit_checkpoint_every,
        heartbeat=settings.audit_heartbeat_seconds,
    )
    return AuditTrail(
        settings, SqlAuditSink(engine, max_queue=settings.audit_queue_size), sealer=sealer
    )
