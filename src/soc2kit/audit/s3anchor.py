"""Checkpoints anchored in an S3 bucket with Object Lock (write once, read many).

Why: the anchor store exists so that whoever controls the database (a DBA, an
attacker with its credentials, a restore from an old backup) cannot delete or roll
back the newest audit events unnoticed. That only holds if the store is outside the
database's control. S3 Object Lock in *compliance* mode makes every anchored
checkpoint immutable until its retain-until date: no user, not even the AWS
account root, can overwrite or delete a locked object version or shorten its
retention. (Governance mode can be bypassed by principals holding
``s3:BypassGovernanceRetention``; use it only for trials.)

Each checkpoint is written once, to
``<prefix>checkpoint-<size:020d>-<timestamp:012d>.txt`` (the names ``DirectoryAnchor``
uses), with ``If-None-Match: *`` so an existing object is never replaced.
:meth:`S3ObjectLockAnchor.notes` reads object *versions*, so a delete marker (which
anyone with ``s3:DeleteObject`` can add without touching the locked version) does not
hide a checkpoint, and an extra version written over a key is reported too.

The IAM principal needs ``s3:PutObject``, ``s3:PutObjectRetention``,
``s3:GetObject``, ``s3:GetObjectVersion``, ``s3:ListBucket``,
``s3:ListBucketVersions`` and ``s3:GetBucketObjectLockConfiguration`` on the bucket,
and should have no ``s3:BypassGovernanceRetention``.

boto3 is an optional extra (``pip install 'soc2kit[aws]'``), imported only when this
anchor is built.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from soc2kit._aws import aws_client, error_code
from soc2kit.audit.checkpoints import Checkpoint
from soc2kit.errors import ConfigurationError

_NOT_FOUND = frozenset({"NoSuchKey", "NotFound"})
# If-None-Match lost: the object exists (412), or a concurrent conditional write won (409).
_EXISTS = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


class AnchorStoreError(OSError):
    """The anchor store could not be read or written (the AWS error code only)."""


class S3ObjectLockAnchor:
    """An anchor store in an S3 bucket with Object Lock; same interface as DirectoryAnchor.

    ``publish(checkpoint)`` writes the note once with a ``mode`` retention of
    ``retention_days``; ``notes()`` returns every anchored note, in key order;
    ``check()`` refuses a bucket without Object Lock (call it at start-up).
    Failures raise :class:`AnchorStoreError` (an ``OSError``), which the sealer
    logs and reports as "anchor store unwritable" while it keeps sealing.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "soc2kit/checkpoints/",
        client: Any | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        retention_days: int = 2555,
        mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE",
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        if not bucket or not bucket.isprintable() or "/" in bucket:
            raise ConfigurationError("the S3 anchor store needs a bucket name")
        if not prefix.isprintable() or prefix.startswith("/"):
            raise ConfigurationError("the S3 anchor prefix must be printable, not start with '/'")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if isinstance(retention_days, bool) or not isinstance(retention_days, int):
            raise ConfigurationError("S3 anchor retention_days must be an integer")
        if not 1 <= retention_days <= 36500:
            raise ConfigurationError("S3 anchor retention_days must be between 1 and 36500")
        if mode not in ("COMPLIANCE", "GOVERNANCE"):
            raise ConfigurationError("S3 anchor mode is COMPLIANCE or GOVERNANCE")
        client, self._aws_errors = aws_client(
            "s3",
            what="the S3 anchor store",
            client=client,
            region_name=region_name,
            endpoint_url=endpoint_url,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )
        self.bucket = bucket
        self.prefix = prefix
        self.retention_days = retention_days
        self.mode = mode
        self._client: Any = client
        self._if_none_match = _supports_if_none_match(client)

    def __repr__(self) -> str:
        return f"S3ObjectLockAnchor(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def key_for(self, checkpoint: Checkpoint) -> str:
        return f"{self.prefix}checkpoint-{checkpoint.size:020d}-{checkpoint.timestamp:012d}.txt"

    # the anchor interface ----------------------------------------------------------
    def check(self) -> None:
        """Raise ConfigurationError unless the bucket has Object Lock enabled."""
        try:
            response = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except self._aws_errors as exc:
            code = error_code(exc)
        else:
            config = response.get("ObjectLockConfiguration") if isinstance(response, dict) else None
            enabled = config.get("ObjectLockEnabled") if isinstance(config, dict) else None
            if enabled == "Enabled":
                return
            code = "ObjectLockNotEnabled"
        if code == "ObjectLockConfigurationNotFoundError":
            code = "ObjectLockNotEnabled"
        raise ConfigurationError(
            f"S3 anchor bucket {self.bucket!r} is unusable ({code}): it must exist, be "
            "readable with these credentials and have Object Lock enabled"
        )

    def publish(self, checkpoint: Checkpoint) -> None:
        key = self.key_for(checkpoint)
        if self._exists(key):
            return  # written once: never overwritten
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": checkpoint.note.encode("utf-8"),
            "ContentType": "text/plain; charset=utf-8",
            "ObjectLockMode": self.mode,
            "ObjectLockRetainUntilDate": datetime.now(UTC) + timedelta(days=self.retention_days),
        }
        if self._if_none_match:
            params["IfNoneMatch"] = "*"
        try:
            self._client.put_object(**params)
        except self._aws_errors as exc:
            code, status = error_code(exc), _http_status(exc)
        else:
            return
        if code in _EXISTS or status in (409, 412):
            return  # another writer anchored it first
        raise AnchorStoreError(f"S3 anchor PutObject failed: {code}")

    def notes(self) -> list[str]:
        """Every anchored note, by key; every distinct version of a key, oldest first.

        Versions, not the current objects: a delete marker hides nothing, and a
        version written over an anchored key is returned too (verify then judges it).
        """
        versions: dict[str, list[str]] = {}  # S3 lists a key's versions newest first
        try:
            paginator = self._client.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for version in page.get("Versions", ()):
                    key = version["Key"]
                    if not key.startswith(self.prefix) or not _is_checkpoint_name(
                        key[len(self.prefix) :]
                    ):
                        continue
                    versions.setdefault(key, []).append(str(version["VersionId"]))
        except self._aws_errors as exc:
            code = error_code(exc)
            raise AnchorStoreError(f"S3 anchor ListObjectVersions failed: {code}") from None
        notes: list[str] = []
        for key in sorted(versions):
            seen: set[str] = set()
            for version_id in reversed(versions[key]):
                text = self._read(key, version_id)
                if text not in seen:
                    seen.add(text)
                    notes.append(text)
        return notes

    # helpers -------------------------------------------------------------------------
    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except self._aws_errors as exc:
            code, status = error_code(exc), _http_status(exc)
        else:
            return True
        if code in _NOT_FOUND or status == 404:
            return False
        raise AnchorStoreError(f"S3 anchor HeadObject failed: {code}")

    def _read(self, key: str, version_id: str) -> str:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            body = response["Body"]
            try:
                data = body.read()
            finally:
                body.close()
        except self._aws_errors as exc:
            code = error_code(exc)
        else:
            if isinstance(data, bytes):
                return data.decode("utf-8", errors="replace")
            code = "UnreadableBody"
        raise AnchorStoreError(f"S3 anchor GetObject failed: {code}")


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of a ClientError (HEAD errors carry no body, so only a "404" code)."""
    response = getattr(exc, "response", None)
    meta = response.get("ResponseMetadata") if isinstance(response, dict) else None
    status = meta.get("HTTPStatusCode") if isinstance(meta, dict) else None
    return status if isinstance(status, int) else None


def _is_checkpoint_name(name: str) -> bool:
    return name.startswith("checkpoint-") and name.endswith(".txt") and "/" not in name


def _supports_if_none_match(client: Any) -> bool:
    """Whether this botocore's S3 model has PutObject's IfNoneMatch (added in 2024)."""
    try:
        shape = client.meta.service_model.operation_model("PutObject").input_shape
        return "IfNoneMatch" in shape.members
    except Exception:  # an unusual client: rely on the HeadObject check alone
        return False
