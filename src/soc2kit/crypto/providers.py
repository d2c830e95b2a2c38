"""Key-encryption-key (KEK) providers: wrap and unwrap data keys, never data.

Envelope encryption: rows are encrypted with data keys; data keys are stored
wrapped by a KEK that lives elsewhere (a key file, an environment variable, or
AWS KMS). A provider is called once per data key per cache lifetime, never per
value. ``rewrap`` moves a wrapped data key under the current KEK without
touching any row (cheap KEK rotation).

Every call carries a *context* (key id, scope, purpose) that the provider binds
to the wrapped key (AES-GCM associated data locally, the EncryptionContext in
KMS), so a wrapped key copied to another keyring row fails to unwrap.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import struct
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from soc2kit.crypto.aead import pae
from soc2kit.crypto.errors import KeyUnavailableError
from soc2kit.errors import ConfigurationError

DEV_KEK_PREFIX = "soc2kit-dev-"
_LOCAL_FORMAT = b"\x4b\x01"  # "K", version 1
_LOCAL_LABEL = b"soc2kit:kek:local:v1"
DEV_KEK_FILE = "dev-kek.json"


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key wrapped by a KEK: the opaque blob and which KEK wrapped it."""

    blob: bytes
    kek_ref: str


class KeyProvider(ABC):
    """Wraps and unwraps 32-byte data keys under a key-encryption key.

    Sync methods are the primitives; the async twins run them in a worker
    thread so a slow KMS never blocks the event loop. Providers raise
    :class:`KeyUnavailableError` (never return garbage) when a key cannot be
    unwrapped, with no key material in the message.
    """

    name: str = "provider"

    @abstractmethod
    def wrap(self, key: bytes, context: Mapping[str, str]) -> WrappedKey:
        """Wrap ``key`` under the current KEK, bound to ``context``."""

    @abstractmethod
    def unwrap(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        """Unwrap ``blob`` (which must have been wrapped with the same context)."""

    def rewrap(self, blob: bytes, context: Mapping[str, str]) -> WrappedKey:
        """Re-wrap under the current KEK. Providers with a native re-encrypt override this."""
        return self.wrap(self.unwrap(blob, context), context)

    @abstractmethod
    def describe(self) -> dict[str, str]:
        """Non-secret facts for evidence reports (provider, current KEK reference)."""

    def is_development(self) -> bool:
        """True when the KEK is a generated development key (refused in production)."""
        return False

    async def awrap(self, key: bytes, context: Mapping[str, str]) -> WrappedKey:
        return await anyio.to_thread.run_sync(self.wrap, key, context)

    async def aunwrap(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        return await anyio.to_thread.run_sync(self.unwrap, blob, context)

    async def arewrap(self, blob: bytes, context: Mapping[str, str]) -> WrappedKey:
        return await anyio.to_thread.run_sync(self.rewrap, blob, context)


def _context_bytes(context: Mapping[str, str]) -> bytes:
    items: list[bytes] = []
    for name in sorted(context):
        items += [name.encode(), context[name].encode()]
    return pae(*items)


class LocalKeyProvider(KeyProvider):
    """KEKs held by the process: from a key file, an environment variable, or generated for dev.

    Several KEKs may be configured (old ones only unwrap); the first is primary.
    Wrapped format: ``4B 01 | len(kek id) | kek id | nonce(12) | AES-256-GCM(key) | tag``,
    with the KEK id and the context as associated data.
    """

    name = "local"

    def __init__(self, keks: Mapping[str, bytes], primary: str, *, development: bool = False):
        if not keks:
            raise ConfigurationError("the local key provider needs at least one KEK")
        if primary not in keks:
            raise ConfigurationError(f"the primary KEK {primary!r} is not among the keys")
        for kek_id, material in keks.items():
            if not kek_id or len(kek_id.encode()) > 255 or not kek_id.isprintable():
                raise ConfigurationError("KEK ids are 1..255 printable characters")
            if len(material) != 32:
                raise ConfigurationError(f"KEK {kek_id!r} is not 32 bytes (AES-256)")
        self._keks = {kek_id: AESGCM(material) for kek_id, material in keks.items()}
        self._primary = primary
        self._development = development

    def __repr__(self) -> str:
        return f"LocalKeyProvider(primary={self._primary!r}, keks={len(self._keks)})"

    # construction ------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: str) -> LocalKeyProvider:
        """Parse ``"kek-id:base64url[,kek-id:base64url...]"`` (first is primary)."""
        keks: dict[str, bytes] = {}
        order: list[str] = []
        for part in (p.strip() for p in spec.split(",")):
            kek_id, sep, encoded = part.rpartition(":")
            if not sep or not kek_id:
                raise ConfigurationError("encryption_kek entries look like 'kek-id:base64url'")
            if kek_id in keks:
                raise ConfigurationError(f"KEK id {kek_id!r} appears twice in encryption_kek")
            keks[kek_id] = _b64decode(encoded, kek_id)
            order.append(kek_id)
        return cls(keks, order[0])

    @classmethod
    def from_file(cls, path: Path) -> LocalKeyProvider:
        """Read ``{"primary": id, "keys": {id: base64url, ...}}`` from ``path``."""
        try:
            data: Any = json.loads(Path(path).read_text("utf-8"))
            keks = {str(k): _b64decode(str(v), str(k)) for k, v in dict(data["keys"]).items()}
            primary = str(data["primary"])
        except (OSError, ValueError, KeyError, TypeError):
            # The reason only: the file holds key material.
            raise ConfigurationError(
                f"encryption_kek_file {str(path)!r} is unreadable or not "
                '{"primary": ..., "keys": {...}} JSON'
            ) from None
        return cls(keks, primary, development=primary.startswith(DEV_KEK_PREFIX))

    @classmethod
    def development(cls, data_dir: Path) -> LocalKeyProvider:
        """The generated development KEK under ``data_dir`` (created 0600 if missing)."""
        path = Path(data_dir) / DEV_KEK_FILE
        if not path.exists():
            kek_id = DEV_KEK_PREFIX + os.urandom(4).hex()
            body = {"primary": kek_id, "keys": {kek_id: _b64encode(os.urandom(32))}}
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole to a private temporary file, then linked into place:
            # a concurrent process never reads a half-written key file.
            tmp = path.with_name(f".{DEV_KEK_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(body, fh)
                with contextlib.suppress(FileExistsError):  # another process won: use theirs
                    os.link(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        if path.stat().st_mode & 0o077:
            raise ConfigurationError(
                f"{str(path)!r} is readable by other users: chmod 600 it (it holds a key)"
            )
        provider = cls.from_file(path)
        provider._development = True
        return provider

    # KeyProvider ---------------------------------------------------------------
    def wrap(self, key: bytes, context: Mapping[str, str]) -> WrappedKey:
        if len(key) != 32:
            raise ValueError("data keys are 32 bytes")
        kek_id = self._primary.encode()
        nonce = os.urandom(12)
        head = _LOCAL_FORMAT + struct.pack(">B", len(kek_id)) + kek_id
        body = self._keks[self._primary].encrypt(nonce, key, self._aad(head, context))
        return WrappedKey(head + nonce + body, f"local:{self._primary}")

    def unwrap(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        if len(blob) < 3 or blob[:2] != _LOCAL_FORMAT:
            raise KeyUnavailableError("wrapped key is not in the local provider's format")
        id_len = blob[2]
        if len(blob) < 3 + id_len + 12 + 32 + 16:
            raise KeyUnavailableError("wrapped key is truncated")
        head = blob[: 3 + id_len]
        kek_id = head[3:].decode("utf-8", "replace")
        kek = self._keks.get(kek_id)
        if kek is None:
            raise KeyUnavailableError(f"KEK {kek_id!r} is not configured")
        nonce, body = blob[3 + id_len : 15 + id_len], blob[15 + id_len :]
        try:
            key = kek.decrypt(nonce, body, self._aad(head, context))
        except InvalidTag:
            raise KeyUnavailableError(
                f"wrapped key failed to unwrap under KEK {kek_id!r} (wrong KEK or moved row)"
            ) from None
        if len(key) != 32:
            raise KeyUnavailableError("wrapped key does not hold a 32-byte data key")
        return key

    def kek_of(self, blob: bytes) -> str:
        """The KEK id a wrapped blob names (for status reports)."""
        if len(blob) < 3 or blob[:2] != _LOCAL_FORMAT:
            return "unknown"
        return blob[3 : 3 + blob[2]].decode("utf-8", "replace")

    def describe(self) -> dict[str, str]:
        return {
            "provider": self.name,
            "kek": f"local:{self._primary}",
            "development": str(self._development).lower(),
        }

    def is_development(self) -> bool:
        return self._development

    @staticmethod
    def _aad(head: bytes, context: Mapping[str, str]) -> bytes:
        return pae(_LOCAL_LABEL, head, _context_bytes(context))


def generate_kek_spec(kek_id: str) -> str:
    """A fresh ``kek-id:base64url`` entry for ``SOC2KIT_ENCRYPTION_KEK``."""
    return f"{kek_id}:{_b64encode(os.urandom(32))}"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, kek_id: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"KEK {kek_id!r} is not valid base64url") from None
    if len(data) != 32:
        raise ConfigurationError(f"KEK {kek_id!r} is not 32 bytes (AES-256)")
    return data
