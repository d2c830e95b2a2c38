"""S3ObjectLockAnchor against moto's S3 server on loopback: write once, lock, verify."""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.audit.tamper_helpers import (
    allow_tampering,
    checkpoint_rows,
    new_kit,
    record_batches,
    truncate_tail,
    verifier_of,
)

import soc2kit
from soc2kit.audit.checkpoints import Checkpoint, NoteVerifier, Signer
from soc2kit.audit.s3anchor import AnchorStoreError, S3ObjectLockAnchor
from soc2kit.audit.verify import verify_log
from soc2kit.errors import ConfigurationError

pytest.importorskip("boto3")
pytest.importorskip("moto")

AWS_REGION = "us-east-1"
AWS_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}
ORIGIN = "soc2kit.test/s3-anchor"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse (and report) any IP connection from this process that is not to loopback."""
    real_connect = socket.socket.connect
    refused: list[object] = []

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in (
            "127.0.0.1",
            "::1",
        ):
            refused.append(address)
            raise PermissionError(f"test tried to connect to {address!r}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    assert refused == []


@pytest.fixture(scope="session")
def moto_s3_endpoint() -> Iterator[str]:
    """URL of a moto server bound to 127.0.0.1 on a kernel-chosen port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        assert host == "127.0.0.1"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3(moto_s3_endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=AWS_REGION, **AWS_CREDENTIALS)
    # proxies={}: never route loopback traffic through an environment proxy.
    return session.client(
        "s3",
        endpoint_url=moto_s3_endpoint,
        config=Config(proxies={}, retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture
def make_bucket(s3: Any) -> Callable[..., str]:
    def make(*, object_lock: bool = True) -> str:
        name = f"anchor-{uuid.uuid4().hex[:20]}"
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    return make


@pytest.fixture
def bucket(make_bucket: Callable[..., str]) -> str:
    return make_bucket()


@pytest.fixture
def anchor(s3: Any, bucket: str) -> S3ObjectLockAnchor:
    return S3ObjectLockAnchor(bucket, client=s3, retention_days=1)


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return Signer.development_key(tmp_path, "svc")


def make_checkpoint(signer: Signer, size: int, timestamp: int = 1_700_000_000) -> Checkpoint:
    root = hashlib.sha256(str(size).encode()).digest()
    return signer.verifier().verify(signer.sign(ORIGIN, size, root, timestamp))


def keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def versions(s3: Any, bucket: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    return found


# publish / notes ----------------------------------------------------------------------------


def test_check_accepts_an_object_lock_bucket(anchor: S3ObjectLockAnchor) -> None:
    anchor.check()


def test_publish_two_and_read_them_back_in_order(
    anchor: S3ObjectLockAnchor, signer: Signer, s3: Any, bucket: str
) -> None:
    later, earlier = make_checkpoint(signer, 12, 1_700_000_100), make_checkpoint(signer, 5)
    anchor.publish(later)
    anchor.publish(earlier)
    assert keys(s3, bucket) == [
        f"soc2kit/checkpoints/checkpoint-{5:020d}-{1_700_000_000:012d}.txt",
        f"soc2kit/checkpoints/checkpoint-{12:020d}-{1_700_000_100:012d}.txt",
    ]
    notes = anchor.notes()
    assert notes == [earlier.note, later.note]
    verifier = signer.verifier()
    assert [verifier.verify(n) for n in notes] == [earlier, later]
    head = s3.head_object(Bucket=bucket, Key=keys(s3, bucket)[0])
    assert head["ContentType"].startswith("text/plain")


def test_publish_twice_keeps_the_first_object(
    anchor: S3ObjectLockAnchor, signer: Signer, s3: Any, bucket: str
) -> None:
    checkpoint = make_checkpoint(signer, 3)
    anchor.publish(checkpoint)
    before = versions(s3, bucket)
    # Same name, other content: must not replace what is anchored.
    impostor = Checkpoint(ORIGIN, 3, b"\0" * 32, checkpoint.timestamp, "not the note\n")
    anchor.publish(impostor)
    anchor.publish(checkpoint)
    after = versions(s3, bucket)
    assert len(after) == 1
    assert after[0]["VersionId"] == before[0]["VersionId"]
    assert after[0]["ETag"] == before[0]["ETag"]
    assert anchor.notes() == [checkpoint.note]


def test_put_is_conditional_even_when_the_head_check_races(
    anchor: S3ObjectLockAnchor,
    signer: Signer,
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer wins between HeadObject and PutObject: If-None-Match stops the overwrite."""
    checkpoint = make_checkpoint(signer, 4)
    anchor.publish(checkpoint)
    monkeypatch.setattr(anchor, "_exists", lambda key: False)
    anchor.publish(Checkpoint(ORIGIN, 4, b"\0" * 32, checkpoint.timestamp, "overwrite\n"))
    assert len(versions(s3, bucket)) == 1
    assert anchor.notes() == [checkpoint.note]


def test_objects_carry_compliance_retention(s3: Any, bucket: str, signer: Signer) -> None:
    anchor = S3ObjectLockAnchor(bucket, client=s3, retention_days=30)
    start = datetime.now(UTC)
    anchor.publish(make_checkpoint(signer, 7))
    (key,) = keys(s3, bucket)
    # HeadObject, not GetObjectRetention: moto 5.2.5 answers that with a 500 here.
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert start + timedelta(days=30) - timedelta(minutes=1) <= until
    assert until <= datetime.now(UTC) + timedelta(days=30, minutes=1)


def test_governance_mode_is_passed_through(s3: Any, bucket: str, signer: Signer) -> None:
    anchor = S3ObjectLockAnchor(bucket, client=s3, retention_days=1, mode="GOVERNANCE")
    anchor.publish(make_checkpoint(signer, 7))
    (key,) = keys(s3, bucket)
    assert s3.head_object(Bucket=bucket, Key=key)["ObjectLockMode"] == "GOVERNANCE"


def test_deleting_a_locked_version_is_refused(
    anchor: S3ObjectLockAnchor, signer: Signer, s3: Any, bucket: str
) -> None:
    from botocore.exceptions import ClientError

    anchor.publish(make_checkpoint(signer, 9))
    (version,) = versions(s3, bucket)
    with pytest.raises(ClientError) as info:
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        s3.delete_object(
            Bucket=bucket,
            Key=version["Key"],
            VersionId=version["VersionId"],
            BypassGovernanceRetention=True,
        )
    assert len(versions(s3, bucket)) == 1


def test_a_delete_marker_does_not_hide_a_checkpoint(
    anchor: S3ObjectLockAnchor, signer: Signer, s3: Any, bucket: str
) -> None:
    checkpoint = make_checkpoint(signer, 2)
    anchor.publish(checkpoint)
    (key,) = keys(s3, bucket)
    s3.delete_object(Bucket=bucket, Key=key)  # no version id: just a delete marker
    assert keys(s3, bucket) == []
    assert anchor.notes() == [checkpoint.note]


def test_a_version_written_over_a_key_is_reported(
    anchor: S3ObjectLockAnchor, signer: Signer, s3: Any, bucket: str
) -> None:
    checkpoint = make_checkpoint(signer, 2)
    anchor.publish(checkpoint)
    (key,) = keys(s3, bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=b"forged\n")
    assert anchor.notes() == [checkpoint.note, "forged\n"]


def test_notes_paginates_and_skips_foreign_keys(s3: Any, bucket: str, signer: Signer) -> None:
    anchor = S3ObjectLockAnchor(bucket, client=s3, prefix="a/b", retention_days=1)
    assert anchor.prefix == "a/b/"
    expected = [make_checkpoint(signer, size) for size in range(1, 6)]
    for cp in reversed(expected):
        anchor.publish(cp)
    s3.put_object(Bucket=bucket, Key="a/b/README", Body=b"x")
    s3.put_object(Bucket=bucket, Key="a/bc/checkpoint-1.txt", Body=b"x")
    original = s3.get_paginator

    def small_pages(name: str) -> Any:
        paginator = original(name)
        real = paginator.paginate
        paginator.paginate = lambda **kw: real(**kw, PaginationConfig={"PageSize": 2})
        return paginator

    anchor._client = type(
        "C",
        (),
        {"get_paginator": staticmethod(small_pages), "get_object": staticmethod(s3.get_object)},
    )()
    assert anchor.notes() == [cp.note for cp in expected]


def test_empty_store_has_no_notes(anchor: S3ObjectLockAnchor) -> None:
    assert anchor.notes() == []


# refusals ------------------------------------------------------------------------------------


def test_check_refuses_a_bucket_without_object_lock(
    s3: Any, make_bucket: Callable[..., str]
) -> None:
    anchor = S3ObjectLockAnchor(make_bucket(object_lock=False), client=s3)
    with pytest.raises(ConfigurationError, match="ObjectLockNotEnabled"):
        anchor.check()


def test_check_refuses_a_missing_bucket(s3: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"\(NoSuchBucket\)"):
        S3ObjectLockAnchor("no-such-bucket-soc2kit", client=s3).check()


def test_store_errors_are_oserrors_with_the_code_only(s3: Any, signer: Signer) -> None:
    anchor = S3ObjectLockAnchor("no-such-bucket-soc2kit", client=s3)
    with pytest.raises(OSError) as info:
        anchor.publish(make_checkpoint(signer, 1))
    assert isinstance(info.value, AnchorStoreError)
    assert str(info.value) in {
        "S3 anchor HeadObject failed: 404",
        "S3 anchor PutObject failed: NoSuchBucket",
    }
    assert info.value.__context__ is None
    with pytest.raises(
        AnchorStoreError, match=r"^S3 anchor ListObjectVersions failed: NoSuchBucket$"
    ):
        anchor.notes()


def test_unreachable_endpoint_is_an_oserror(
    signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in AWS_CREDENTIALS.items():
        monkeypatch.setenv(name.upper(), value)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    anchor = S3ObjectLockAnchor(
        "bucket",
        region_name=AWS_REGION,
        endpoint_url=f"http://127.0.0.1:{port}",
        max_attempts=1,
        connect_timeout=1,
    )
    with pytest.raises(
        AnchorStoreError, match=r"^S3 anchor HeadObject failed: EndpointConnectionError$"
    ):
        anchor.publish(make_checkpoint(signer, 1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": True}, "retention_days"),
        ({"mode": "LEGAL_HOLD"}, "COMPLIANCE or GOVERNANCE"),
        ({"prefix": "/abs/"}, "prefix"),
        ({"endpoint_url": "http://127.0.0.1:1"}, "not both"),
    ],
)
def test_bad_arguments(s3: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        S3ObjectLockAnchor("bucket", client=s3, **kwargs)


def test_bad_bucket_name(s3: Any) -> None:
    with pytest.raises(ConfigurationError, match="bucket"):
        S3ObjectLockAnchor("", client=s3)


def test_missing_boto3_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ConfigurationError, match=r"soc2kit\[aws\]"):
        S3ObjectLockAnchor("bucket", region_name=AWS_REGION)


# end to end ----------------------------------------------------------------------------------


def test_verify_log_detects_truncation_with_the_s3_anchor(
    make_settings: Callable[..., soc2kit.Settings], s3: Any, bucket: str
) -> None:
    kit = new_kit(make_settings)
    try:
        record_batches(kit, 3, 4, 5)
        sealer = kit.audit.sealer
        assert sealer is not None
        origin = sealer.origin
        verifier: NoteVerifier = verifier_of(kit)
        engine = kit.engine
        rows = checkpoint_rows(engine)
        assert [size for _, size, _ in rows][-1] == 12
        s3_anchor = S3ObjectLockAnchor(bucket, client=s3, retention_days=1)
        s3_anchor.check()
        for _, _, note in rows:
            s3_anchor.publish(verifier.verify(note))

        intact = verify_log(engine, verifier, origin=origin, anchor=s3_anchor)
        anchors = {c.name: c for c in intact.checks}["anchors"]
        assert anchors.status == "pass", intact

        allow_tampering(engine)
        truncate_tail(engine, 7)
        report = verify_log(engine, verifier, origin=origin, anchor=s3_anchor)
        assert report.status == "fail"
        anchors = {c.name: c for c in report.checks}["anchors"]
        assert anchors.status == "fail"
        assert "missing from the database" in anchors.detail
    finally:
        kit.shutdown()
