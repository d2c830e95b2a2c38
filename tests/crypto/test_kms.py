"""AwsKmsProvider against moto's KMS server on loopback: wrapping, binding, rotation, failures."""

from __future__ import annotations

import base64
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from botocore.stub import Stubber

from soc2kit.crypto.errors import KeyUnavailableError
from soc2kit.crypto.kms import AwsKmsProvider
from soc2kit.crypto.providers import KeyProvider
from soc2kit.errors import ConfigurationError

CONTEXT = {"key_id": "k-1", "scope": "tenant-a", "purpose": "field"}

MakeClient = Callable[..., Any]
MakeKey = Callable[[], dict[str, Any]]


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


@pytest.fixture
def provider(kms_key: dict[str, Any], make_kms_client: MakeClient) -> AwsKmsProvider:
    return AwsKmsProvider(kms_key["KeyId"], client=make_kms_client())


def record_operations(client: Any) -> list[str]:
    """The KMS operations ``client`` makes from now on, in order."""
    seen: list[str] = []

    def before_call(model: Any, **_: Any) -> None:
        seen.append(model.name)

    client.meta.events.register("before-call.kms", before_call)
    return seen


def closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_no_secret(text: str, *secrets: bytes) -> None:
    for secret in secrets:
        for form in (
            secret.hex(),
            base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode().rstrip("="),
            repr(secret),
        ):
            assert form not in text


# round trip and binding ---------------------------------------------------------
def test_wrap_then_unwrap_returns_the_data_key(
    provider: AwsKmsProvider, kms_key: dict[str, Any]
) -> None:
    key = os.urandom(32)
    wrapped = provider.wrap(key, CONTEXT)

    assert key not in wrapped.blob
    assert wrapped.kek_ref == "aws-kms:" + kms_key["Arn"]
    assert provider.unwrap(wrapped.blob, CONTEXT) == key
    assert provider.unwrap(wrapped.blob, dict(reversed(CONTEXT.items()))) == key


def test_two_wraps_of_one_key_differ(provider: AwsKmsProvider) -> None:
    key = os.urandom(32)
    assert provider.wrap(key, CONTEXT).blob != provider.wrap(key, CONTEXT).blob


@pytest.mark.parametrize(
    "other_context",
    [
        {**CONTEXT, "key_id": "k-2"},
        {**CONTEXT, "scope": "tenant-b"},
        {**CONTEXT, "purpose": "blind-index"},
        {**CONTEXT, "extra": "x"},
        {"key_id": "k-1", "scope": "tenant-a"},
        {},
    ],
    ids=["key_id", "scope", "purpose", "extra-entry", "missing-entry", "empty"],
)
def test_unwrap_with_another_context_fails(
    provider: AwsKmsProvider, other_context: dict[str, str]
) -> None:
    key = os.urandom(32)
    blob = provider.wrap(key, CONTEXT).blob

    with pytest.raises(KeyUnavailableError) as caught:
        provider.unwrap(blob, other_context)

    assert str(caught.value) == "AWS KMS Decrypt failed: InvalidCiphertextException"


def test_alias_as_key_id_wraps_under_the_aliased_key(
    kms_admin: Any, kms_key: dict[str, Any], make_kms_client: MakeClient
) -> None:
    kms_admin.create_alias(AliasName="alias/soc2kit-test", TargetKeyId=kms_key["KeyId"])
    provider = AwsKmsProvider("alias/soc2kit-test", client=make_kms_client())
    key = os.urandom(32)

    wrapped = provider.wrap(key, CONTEXT)

    assert wrapped.kek_ref == "aws-kms:" + kms_key["Arn"]
    assert provider.unwrap(wrapped.blob, CONTEXT) == key


def test_unwrap_refuses_a_plaintext_that_is_not_a_data_key(
    provider: AwsKmsProvider, kms_admin: Any, kms_key: dict[str, Any]
) -> None:
    short = os.urandom(16)
    blob = kms_admin.encrypt(KeyId=kms_key["KeyId"], Plaintext=short, EncryptionContext=CONTEXT)[
        "CiphertextBlob"
    ]

    with pytest.raises(KeyUnavailableError) as caught:
        provider.unwrap(blob, CONTEXT)

    assert_no_secret(str(caught.value), short, blob)


def test_wrap_refuses_a_key_that_is_not_32_bytes(provider: AwsKmsProvider) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        provider.wrap(b"k" * 16, CONTEXT)


# KEK rotation -----------------------------------------------------------------------
def test_rewrap_moves_the_data_key_to_the_new_kms_key_inside_kms(
    make_kms_key: MakeKey, make_kms_client: MakeClient
) -> None:
    old_key, new_key = make_kms_key(), make_kms_key()
    old = AwsKmsProvider(old_key["Arn"], client=make_kms_client())
    new_client = make_kms_client()
    new = AwsKmsProvider(new_key["KeyId"], client=new_client)
    key = os.urandom(32)
    old_blob = old.wrap(key, CONTEXT).blob

    calls = record_operations(new_client)
    rewrapped = new.rewrap(old_blob, CONTEXT)

    assert calls == ["ReEncrypt"]  # the data key never came back to this process
    assert rewrapped.kek_ref == "aws-kms:" + new_key["Arn"]
    assert rewrapped.blob != old_blob
    only_new = AwsKmsProvider(
        new_key["KeyId"], client=make_kms_client(), allowed_key_ids=[new_key["KeyId"]]
    )
    assert only_new.unwrap(rewrapped.blob, CONTEXT) == key
    assert old.unwrap(old_blob, CONTEXT) == key  # the old blob still holds the same key


def test_rewrap_keeps_the_context_binding(
    make_kms_key: MakeKey, make_kms_client: MakeClient
) -> None:
    old = AwsKmsProvider(make_kms_key()["KeyId"], client=make_kms_client())
    new = AwsKmsProvider(make_kms_key()["KeyId"], client=make_kms_client())
    blob = old.wrap(os.urandom(32), CONTEXT).blob

    with pytest.raises(KeyUnavailableError, match="ReEncrypt failed: InvalidCiphertextException"):
        new.rewrap(blob, {**CONTEXT, "scope": "tenant-b"})
    rewrapped = new.rewrap(blob, CONTEXT)
    with pytest.raises(KeyUnavailableError, match="Decrypt failed: InvalidCiphertextException"):
        new.unwrap(rewrapped.blob, {**CONTEXT, "scope": "tenant-b"})


def test_blobs_from_the_previous_kms_key_still_unwrap(
    make_kms_key: MakeKey, make_kms_client: MakeClient
) -> None:
    """Decrypt must not pin KeyId: after moving key_id, old blobs are under the old key."""
    old = AwsKmsProvider(make_kms_key()["KeyId"], client=make_kms_client())
    new = AwsKmsProvider(make_kms_key()["KeyId"], client=make_kms_client())
    key = os.urandom(32)

    assert new.unwrap(old.wrap(key, CONTEXT).blob, CONTEXT) == key


# allowed_key_ids ----------------------------------------------------------------
@pytest.mark.parametrize("form", ["KeyId", "Arn"])
def test_allowed_key_ids_refuses_a_blob_under_another_kms_key(
    make_kms_key: MakeKey, make_kms_client: MakeClient, form: str
) -> None:
    foreign_key, own_key = make_kms_key(), make_kms_key()
    foreign = AwsKmsProvider(foreign_key["KeyId"], client=make_kms_client())
    own = AwsKmsProvider(own_key[form], client=make_kms_client(), allowed_key_ids=[own_key[form]])
    key = os.urandom(32)
    blob = foreign.wrap(key, CONTEXT).blob

    with pytest.raises(KeyUnavailableError) as caught:
        own.unwrap(blob, CONTEXT)

    message = str(caught.value)
    assert "not in allowed_key_ids" in message
    assert foreign_key["Arn"] in message
    assert_no_secret(message, key, blob)
    # ...and rewrap must not launder the foreign blob under the allowed key.
    with pytest.raises(KeyUnavailableError, match="ReEncrypt refused"):
        own.rewrap(blob, CONTEXT)


def test_allowed_key_ids_accepts_listed_previous_keys(
    make_kms_key: MakeKey, make_kms_client: MakeClient
) -> None:
    old_key, new_key = make_kms_key(), make_kms_key()
    old = AwsKmsProvider(old_key["KeyId"], client=make_kms_client())
    new = AwsKmsProvider(
        new_key["Arn"], client=make_kms_client(), allowed_key_ids=[old_key["KeyId"]]
    )
    key = os.urandom(32)

    assert new.unwrap(old.wrap(key, CONTEXT).blob, CONTEXT) == key
    # key_id itself is always allowed
    assert new.unwrap(new.wrap(key, CONTEXT).blob, CONTEXT) == key
    assert new.unwrap(new.rewrap(old.wrap(key, CONTEXT).blob, CONTEXT).blob, CONTEXT) == key


@pytest.mark.parametrize(
    "allowed",
    [["alias/kek"], ["arn:aws:kms:us-east-1:123456789012:alias/kek"], "1234abcd"],
    ids=["alias-name", "alias-arn", "bare-string"],
)
def test_allowed_key_ids_rejects_aliases_and_bare_strings(
    make_kms_client: MakeClient, allowed: Any
) -> None:
    with pytest.raises(ConfigurationError):
        AwsKmsProvider("1234abcd", client=make_kms_client(), allowed_key_ids=allowed)


def test_alias_key_id_with_empty_allowed_list_is_refused(make_kms_client: MakeClient) -> None:
    with pytest.raises(ConfigurationError, match="allowed_key_ids"):
        AwsKmsProvider("alias/kek", client=make_kms_client(), allowed_key_ids=[])


# failures: disabled key, unreachable KMS, error hygiene -------------------------
def test_disabled_key_error_names_the_code_only(make_kms_client: MakeClient) -> None:
    """Real KMS answers Decrypt under a disabled key with DisabledException (stubbed here)."""
    client = make_kms_client()
    provider = AwsKmsProvider("1234abcd-12ab-34cd-56ef-1234567890ab", client=client)
    key, blob = os.urandom(32), os.urandom(64)
    with Stubber(client) as stub:
        stub.add_client_error(
            "decrypt",
            service_error_code="DisabledException",
            # AWS messages can echo request data: this one does, to prove it is dropped.
            service_message=f"key disabled; request {base64.b64encode(blob).decode()} {key!r}",
            http_status_code=400,
        )
        with pytest.raises(KeyUnavailableError) as caught:
            provider.unwrap(blob, CONTEXT)
        stub.assert_no_pending_responses()

    error = caught.value
    assert str(error) == "AWS KMS Decrypt failed: DisabledException"
    assert_no_secret(str(error), key, blob)
    assert error.__cause__ is None
    assert error.__context__ is None  # the botocore error (and its request) is not kept


@pytest.mark.xfail(
    strict=True,
    reason="moto 5.2.5 does not check key state on Decrypt; real KMS raises DisabledException. "
    "When this XPASSes, moto enforces it: drop the marker.",
)
def test_disabled_key_against_moto(
    provider: AwsKmsProvider, kms_admin: Any, kms_key: dict[str, Any]
) -> None:
    key = os.urandom(32)
    blob = provider.wrap(key, CONTEXT).blob
    kms_admin.disable_key(KeyId=kms_key["KeyId"])

    with pytest.raises(KeyUnavailableError) as caught:
        provider.unwrap(blob, CONTEXT)

    assert str(caught.value) == "AWS KMS Decrypt failed: DisabledException"


def test_kms_errors_carry_neither_blob_nor_key(provider: AwsKmsProvider) -> None:
    blob = b"not a kms ciphertext" + os.urandom(16)

    with pytest.raises(KeyUnavailableError) as caught:
        provider.unwrap(blob, CONTEXT)

    assert str(caught.value) == "AWS KMS Decrypt failed: InvalidCiphertextException"
    assert_no_secret(str(caught.value), blob)
    assert caught.value.__context__ is None


def test_unknown_key_id_fails_wrap(make_kms_client: MakeClient) -> None:
    provider = AwsKmsProvider("00000000-0000-0000-0000-000000000000", client=make_kms_client())

    with pytest.raises(KeyUnavailableError, match=r"^AWS KMS Encrypt failed: NotFoundException$"):
        provider.wrap(os.urandom(32), CONTEXT)


@pytest.mark.usefixtures("aws_env")
def test_unreachable_kms_fails_fast() -> None:
    provider = AwsKmsProvider(
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        endpoint_url=f"http://127.0.0.1:{closed_loopback_port()}",
        connect_timeout=1,
        read_timeout=1,
        max_attempts=1,
    )
    key = os.urandom(32)

    started = time.monotonic()
    with pytest.raises(KeyUnavailableError) as unwrap_error:
        provider.unwrap(b"\x01" * 64, CONTEXT)
    with pytest.raises(KeyUnavailableError) as wrap_error:
        provider.wrap(key, CONTEXT)
    elapsed = time.monotonic() - started

    assert str(unwrap_error.value) == "AWS KMS Decrypt failed: EndpointConnectionError"
    assert str(wrap_error.value) == "AWS KMS Encrypt failed: EndpointConnectionError"
    assert_no_secret(str(wrap_error.value), key)
    assert elapsed < 5


# construction -----------------------------------------------------------------------
@pytest.mark.usefixtures("aws_env")
def test_builds_its_own_client_with_bounded_timeouts(
    moto_kms_endpoint: str, kms_key: dict[str, Any]
) -> None:
    provider = AwsKmsProvider(
        kms_key["KeyId"], region_name="us-east-1", endpoint_url=moto_kms_endpoint
    )
    key = os.urandom(32)

    assert provider.unwrap(provider.wrap(key, CONTEXT).blob, CONTEXT) == key
    config = provider._client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5.0, 10.0)
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}


@pytest.mark.usefixtures("aws_env")
def test_missing_region_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    with pytest.raises(ConfigurationError, match="region"):
        AwsKmsProvider("alias/kek")


def test_missing_boto3_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` fail

    with pytest.raises(ConfigurationError) as caught:
        AwsKmsProvider("alias/kek", region_name="us-east-1")

    assert str(caught.value) == "AWS KMS needs the aws extra: pip install 'soc2kit[aws]'"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("",), {}),
        (("alias/kek",), {"max_attempts": 0}),
        (("alias/kek",), {"connect_timeout": 0}),
        (("alias/kek",), {"read_timeout": -1}),
    ],
)
def test_bad_settings_are_configuration_errors(
    make_kms_client: MakeClient, args: tuple[str], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        AwsKmsProvider(*args, client=make_kms_client(), **kwargs)


def test_client_and_endpoint_together_are_refused(make_kms_client: MakeClient) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        AwsKmsProvider("alias/kek", client=make_kms_client(), endpoint_url="http://127.0.0.1:1")


# async twins, describe ------------------------------------------------------------------
def test_async_twins(make_kms_key: MakeKey, make_kms_client: MakeClient) -> None:
    old = AwsKmsProvider(make_kms_key()["KeyId"], client=make_kms_client())
    new_key = make_kms_key()
    new = AwsKmsProvider(new_key["KeyId"], client=make_kms_client())
    key = os.urandom(32)

    async def main() -> None:
        wrapped = await old.awrap(key, CONTEXT)
        assert await old.aunwrap(wrapped.blob, CONTEXT) == key
        rewrapped = await new.arewrap(wrapped.blob, CONTEXT)
        assert rewrapped.kek_ref == "aws-kms:" + new_key["Arn"]
        assert await new.aunwrap(rewrapped.blob, CONTEXT) == key
        with pytest.raises(KeyUnavailableError):
            await new.aunwrap(rewrapped.blob, {**CONTEXT, "scope": "tenant-b"})

    anyio.run(main)


def test_describe_and_repr_hold_no_secret(
    kms_key: dict[str, Any], make_kms_client: MakeClient
) -> None:
    provider = AwsKmsProvider(kms_key["KeyId"], client=make_kms_client())
    key = os.urandom(32)
    blob = provider.wrap(key, CONTEXT).blob

    assert isinstance(provider, KeyProvider)
    assert provider.name == "aws-kms"
    assert not provider.is_development()
    assert provider.describe() == {
        "provider": "aws-kms",
        "kek": f"aws-kms:{kms_key['KeyId']}",
        "region": "us-east-1",
    }
    text = repr(provider) + repr(provider.describe())
    assert "testing" not in text  # the dummy credentials
    assert_no_secret(text, key, blob)

    restricted = AwsKmsProvider(
        kms_key["Arn"], client=make_kms_client(), allowed_key_ids=[kms_key["KeyId"]]
    )
    assert restricted.describe()["allowed_key_ids"] == ",".join(
        sorted([kms_key["Arn"], kms_key["KeyId"]])
    )
