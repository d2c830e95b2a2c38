"""LocalKeyProvider: spec parsing, wrapping bound to context and KEK, rotation, dev KEK file."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import anyio
import pytest

from soc2kit.crypto.errors import KeyUnavailableError
from soc2kit.crypto.providers import (
    DEV_KEK_PREFIX,
    LocalKeyProvider,
    WrappedKey,
    generate_kek_spec,
)
from soc2kit.errors import ConfigurationError

CONTEXT = {"key_id": "k-1", "scope": "tenant-a", "purpose": "field"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


KEK_A = bytes(range(32))
KEK_B = bytes(range(100, 132))
SPEC_A = f"kek-a:{b64(KEK_A)}"
SPEC_B = f"kek-b:{b64(KEK_B)}"


def assert_no_material(text: str, *secrets: bytes) -> None:
    for secret in secrets:
        for form in (
            secret.hex(),
            b64(secret),
            base64.b64encode(secret).decode(),
            repr(secret),
        ):
            assert form not in text


# from_spec ------------------------------------------------------------------------
def test_from_spec_single_kek() -> None:
    provider = LocalKeyProvider.from_spec(SPEC_A)

    assert provider.describe() == {
        "provider": "local",
        "kek": "local:kek-a",
        "development": "false",
    }
    assert not provider.is_development()
    assert_no_material(repr(provider) + repr(provider.describe()), KEK_A)


def test_from_spec_first_entry_is_primary_and_others_unwrap() -> None:
    provider = LocalKeyProvider.from_spec(f" {SPEC_B} , {SPEC_A} ")
    key = os.urandom(32)
    under_a = LocalKeyProvider.from_spec(SPEC_A).wrap(key, CONTEXT)

    assert provider.describe()["kek"] == "local:kek-b"
    assert provider.wrap(key, CONTEXT).kek_ref == "local:kek-b"
    assert provider.unwrap(under_a.blob, CONTEXT) == key


def test_from_spec_accepts_padded_base64url() -> None:
    padded = base64.urlsafe_b64encode(KEK_A).decode()
    assert padded.endswith("=")
    key = os.urandom(32)

    provider = LocalKeyProvider.from_spec(f"kek-a:{padded}")

    assert (
        LocalKeyProvider.from_spec(SPEC_A).unwrap(provider.wrap(key, CONTEXT).blob, CONTEXT) == key
    )


def test_generated_spec_round_trips() -> None:
    spec = generate_kek_spec("fresh")
    provider = LocalKeyProvider.from_spec(spec)
    key = os.urandom(32)

    assert spec.startswith("fresh:")
    assert provider.unwrap(provider.wrap(key, CONTEXT).blob, CONTEXT) == key
    assert generate_kek_spec("fresh") != spec


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "no-separator",
        f":{b64(KEK_A)}",
        f"{b64(KEK_A)}",
        "kek-a:",
        "kek-a:not*base64!",
        f"kek-a:{b64(KEK_A[:16])}",
        f"kek-a:{b64(KEK_A + b'x')}",
        f"{SPEC_A},",
        f"{SPEC_A},kek-b:{b64(KEK_B[:31])}",
        f"{'x' * 256}:{b64(KEK_A)}",
        f"kek\x00a:{b64(KEK_A)}",
    ],
    ids=[
        "empty",
        "no-separator",
        "no-id",
        "bare-key",
        "no-key",
        "not-base64",
        "16-bytes",
        "33-bytes",
        "trailing-comma",
        "second-entry-short",
        "id-too-long",
        "id-not-printable",
    ],
)
def test_bad_specs_are_configuration_errors_without_key_material(spec: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        LocalKeyProvider.from_spec(spec)

    assert_no_material(str(caught.value), KEK_A, KEK_A[:16], KEK_A + b"x", KEK_B, KEK_B[:31])


def test_constructor_validates() -> None:
    with pytest.raises(ConfigurationError):
        LocalKeyProvider({}, "a")
    with pytest.raises(ConfigurationError):
        LocalKeyProvider({"a": KEK_A}, "b")
    with pytest.raises(ConfigurationError) as caught:
        LocalKeyProvider({"a": KEK_A[:31]}, "a")
    assert_no_material(str(caught.value), KEK_A[:31])


# wrap / unwrap ----------------------------------------------------------------------
@pytest.fixture
def provider() -> LocalKeyProvider:
    return LocalKeyProvider.from_spec(SPEC_A)


def test_round_trip(provider: LocalKeyProvider) -> None:
    key = os.urandom(32)
    wrapped = provider.wrap(key, CONTEXT)

    assert isinstance(wrapped, WrappedKey)
    assert wrapped.kek_ref == "local:kek-a"
    assert key not in wrapped.blob
    assert provider.kek_of(wrapped.blob) == "kek-a"
    assert provider.unwrap(wrapped.blob, CONTEXT) == key
    assert provider.unwrap(wrapped.blob, dict(reversed(CONTEXT.items()))) == key
    assert provider.wrap(key, CONTEXT).blob != wrapped.blob  # fresh nonce each time


@pytest.mark.parametrize(
    "other_context",
    [
        {**CONTEXT, "key_id": "k-2"},
        {**CONTEXT, "scope": "tenant-b"},
        {**CONTEXT, "purpose": "blind-index"},
        {**CONTEXT, "extra": ""},
        {"key_id": "k-1", "scope": "tenant-a"},
        {},
        # the same bytes split differently between name and value
        {**{k: v for k, v in CONTEXT.items() if k != "scope"}, "scopet": "enant-a"},
    ],
    ids=["key_id", "scope", "purpose", "extra-entry", "missing-entry", "empty", "reframed"],
)
def test_unwrap_with_another_context_fails(
    provider: LocalKeyProvider, other_context: dict[str, str]
) -> None:
    key = os.urandom(32)
    blob = provider.wrap(key, CONTEXT).blob

    with pytest.raises(KeyUnavailableError) as caught:
        provider.unwrap(blob, other_context)

    assert_no_material(str(caught.value), key, KEK_A, blob)


def test_blob_under_a_kek_no_longer_configured_names_it() -> None:
    key = os.urandom(32)
    blob = LocalKeyProvider.from_spec(SPEC_A).wrap(key, CONTEXT).blob
    without_a = LocalKeyProvider.from_spec(SPEC_B)

    with pytest.raises(KeyUnavailableError, match="'kek-a'") as caught:
        without_a.unwrap(blob, CONTEXT)

    assert_no_material(str(caught.value), key, KEK_A, KEK_B, blob)


def test_same_kek_id_with_other_material_fails() -> None:
    blob = LocalKeyProvider.from_spec(SPEC_A).wrap(os.urandom(32), CONTEXT).blob
    impostor = LocalKeyProvider.from_spec(f"kek-a:{b64(KEK_B)}")

    with pytest.raises(KeyUnavailableError, match="'kek-a'"):
        impostor.unwrap(blob, CONTEXT)


def test_every_byte_of_the_blob_is_authenticated(provider: LocalKeyProvider) -> None:
    blob = provider.wrap(os.urandom(32), CONTEXT).blob

    for index in range(len(blob)):
        for flip in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[index] ^= flip
            with pytest.raises(KeyUnavailableError):
                provider.unwrap(bytes(tampered), CONTEXT)


def test_appended_bytes_fail(provider: LocalKeyProvider) -> None:
    blob = provider.wrap(os.urandom(32), CONTEXT).blob

    with pytest.raises(KeyUnavailableError):
        provider.unwrap(blob + b"\x00", CONTEXT)


@pytest.mark.parametrize("length", [0, 1, 2, 3, 7, 16, 20, 30, 40, 67])
def test_truncated_blobs_fail_outside_the_short_nonce_gap(
    provider: LocalKeyProvider, length: int
) -> None:
    blob = provider.wrap(os.urandom(32), CONTEXT).blob
    assert length < len(blob)

    with pytest.raises(KeyUnavailableError):
        provider.unwrap(blob[:length], CONTEXT)


def test_truncation_inside_the_nonce_is_key_unavailable(provider: LocalKeyProvider) -> None:
    blob = provider.wrap(os.urandom(32), CONTEXT).blob  # header is 3 + len("kek-a") = 8 bytes

    with pytest.raises(KeyUnavailableError):
        provider.unwrap(blob[:10], CONTEXT)


# rotation ---------------------------------------------------------------------------
def test_rewrap_moves_from_an_old_kek_to_the_new_primary() -> None:
    key = os.urandom(32)
    old_blob = LocalKeyProvider.from_spec(f"old:{b64(KEK_A)}").wrap(key, CONTEXT).blob
    rotated = LocalKeyProvider.from_spec(f"new:{b64(KEK_B)},old:{b64(KEK_A)}")

    rewrapped = rotated.rewrap(old_blob, CONTEXT)

    assert rewrapped.kek_ref == "local:new"
    assert rotated.kek_of(rewrapped.blob) == "new"
    assert LocalKeyProvider.from_spec(f"new:{b64(KEK_B)}").unwrap(rewrapped.blob, CONTEXT) == key
    assert rotated.unwrap(old_blob, CONTEXT) == key  # the old blob is untouched
    with pytest.raises(KeyUnavailableError, match="'new'"):
        LocalKeyProvider.from_spec(f"old:{b64(KEK_A)}").unwrap(rewrapped.blob, CONTEXT)
    with pytest.raises(KeyUnavailableError):
        rotated.rewrap(old_blob, {**CONTEXT, "scope": "tenant-b"})


def test_kek_of_unknown_format() -> None:
    provider = LocalKeyProvider.from_spec(SPEC_A)

    assert provider.kek_of(b"") == "unknown"
    assert provider.kek_of(b"\x00\x00\x00") == "unknown"
    with pytest.raises(KeyUnavailableError, match="format"):
        provider.unwrap(b"\x00" * 64, CONTEXT)


def test_async_twins(provider: LocalKeyProvider) -> None:
    key = os.urandom(32)

    async def main() -> None:
        wrapped = await provider.awrap(key, CONTEXT)
        assert await provider.aunwrap(wrapped.blob, CONTEXT) == key
        assert (
            await provider.aunwrap((await provider.arewrap(wrapped.blob, CONTEXT)).blob, CONTEXT)
            == key
        )
        with pytest.raises(KeyUnavailableError):
            await provider.aunwrap(wrapped.blob, {})

    anyio.run(main)


# development KEK -------------------------------------------------------------------
def test_development_creates_a_0600_file_and_reuses_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "nested"
    first = LocalKeyProvider.development(data_dir)
    path = data_dir / "dev-kek.json"

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    body = json.loads(path.read_text())
    assert body["primary"].startswith(DEV_KEK_PREFIX)
    assert first.is_development()
    assert first.describe() == {
        "provider": "local",
        "kek": f"local:{body['primary']}",
        "development": "true",
    }
    key = os.urandom(32)
    blob = first.wrap(key, CONTEXT).blob

    second = LocalKeyProvider.development(data_dir)

    assert second.unwrap(blob, CONTEXT) == key
    assert json.loads(path.read_text()) == body
    assert LocalKeyProvider.development(tmp_path / "elsewhere").describe() != first.describe()


def test_from_file_flags_development_by_prefix(tmp_path: Path) -> None:
    dev_path, prod_path = tmp_path / "dev.json", tmp_path / "prod.json"
    dev_id = DEV_KEK_PREFIX + "abcd"
    dev_path.write_text(json.dumps({"primary": dev_id, "keys": {dev_id: b64(KEK_A)}}))
    prod_path.write_text(json.dumps({"primary": "prod-1", "keys": {"prod-1": b64(KEK_A)}}))

    assert LocalKeyProvider.from_file(dev_path).is_development()
    assert not LocalKeyProvider.from_file(prod_path).is_development()
    assert not LocalKeyProvider.from_spec(SPEC_A).is_development()


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not json",
        json.dumps({"keys": {"a": b64(KEK_A)}}),
        json.dumps({"primary": "a"}),
        json.dumps({"primary": "a", "keys": [b64(KEK_A)]}),
        json.dumps({"primary": "b", "keys": {"a": b64(KEK_A)}}),
        json.dumps({"primary": "a", "keys": {"a": b64(KEK_A[:16])}}),
    ],
    ids=["empty", "not-json", "no-primary", "no-keys", "keys-list", "primary-missing", "short"],
)
def test_bad_kek_files_are_configuration_errors_without_key_material(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "kek.json"
    path.write_text(content)

    with pytest.raises(ConfigurationError) as caught:
        LocalKeyProvider.from_file(path)

    assert_no_material(str(caught.value), KEK_A, KEK_A[:16])


def test_missing_kek_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        LocalKeyProvider.from_file(tmp_path / "absent.json")


def test_a_kek_id_given_twice_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="twice") as info:
        LocalKeyProvider.from_spec(f"a:{b64(KEK_A)},a:{b64(KEK_B)}")
    assert b64(KEK_A) not in str(info.value) and b64(KEK_B) not in str(info.value)


def test_a_development_kek_readable_by_others_is_refused(tmp_path: Path) -> None:
    LocalKeyProvider.development(tmp_path)
    (tmp_path / "dev-kek.json").chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        LocalKeyProvider.development(tmp_path)


def test_wrapping_anything_but_a_32_byte_key_is_refused(provider: LocalKeyProvider) -> None:
    with pytest.raises(ValueError):
        provider.wrap(b"short", CONTEXT)
