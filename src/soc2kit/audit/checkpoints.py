"""Signed checkpoints of the audit log and the anchor store outside the database.

A checkpoint is a C2SP *signed note* (https://c2sp.org/signed-note) whose body is
a transparency-log checkpoint (https://c2sp.org/tlog-checkpoint)::

    <origin>
    <tree size>
    <base64 root hash>
    timestamp <unix seconds>

    — <key name> <base64(4-byte key hash || Ed25519 signature)>

Anyone with the verifier key (``<name>+<hex key hash>+<base64(0x01 || public key)>``)
can check it offline. Each checkpoint is also written, once and read-only, to an
anchor store the database cannot reach, so deleting or rolling back the newest
events and checkpoints in the database is detected.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from soc2kit.errors import ConfigurationError

DEV_SIGNER_PREFIX = "soc2kit-dev-"
DEV_KEY_FILE = "dev-audit-signing-key.json"
_ALG_ED25519 = b"\x01"
_DASH = "\u2014"
_MANIFEST_LABEL = b"soc2kit evidence manifest v1\n"


class CheckpointError(Exception):
    """A checkpoint that does not parse or whose signature does not verify."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    timestamp: int
    note: str  # the whole signed note, as stored and anchored


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ALG_ED25519 + public).digest()[:4]


def checkpoint_body(origin: str, size: int, root: bytes, timestamp: int) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\ntimestamp {timestamp}\n"


class Signer:
    """An Ed25519 key that signs checkpoints under a key name."""

    def __init__(self, name: str, key: Ed25519PrivateKey, *, development: bool = False) -> None:
        if not name or any(c.isspace() or c == "+" for c in name):
            raise ConfigurationError("signer names have no spaces or '+'")
        self.name = name
        self._key = key
        self.public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.development = development

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r})"

    def sign(self, origin: str, size: int, root: bytes, timestamp: int | None = None) -> str:
        body = checkpoint_body(
            origin, size, root, int(time.time()) if timestamp is None else timestamp
        )
        signature = self._key.sign(body.encode())
        blob = base64.b64encode(_key_hash(self.name, self.public) + signature).decode()
        return f"{body}\n{_DASH} {self.name} {blob}\n"

    def sign_manifest(self, data: bytes) -> str:
        """Ed25519 over ``data`` under a label of its own (never a valid checkpoint)."""
        return base64.b64encode(self._key.sign(_MANIFEST_LABEL + data)).decode()

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.public)

    @property
    def vkey(self) -> str:
        return self.verifier().vkey

    # construction --------------------------------------------------------------
    @classmethod
    def from_seed(cls, name: str, seed: str) -> Signer:
        """``seed``: the 32-byte Ed25519 private key, base64url."""
        try:
            raw = base64.urlsafe_b64decode(seed + "=" * (-len(seed) % 4))
        except (binascii.Error, ValueError):
            raise ConfigurationError("audit_signing_key is not base64url") from None
        if len(raw) != 32:
            raise ConfigurationError("audit_signing_key must be a 32-byte Ed25519 key")
        return cls(name, Ed25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        """Read ``{"name": ..., "key": base64url seed}``."""
        try:
            data = json.loads(Path(path).read_text("utf-8"))
            name, seed = str(data["name"]), str(data["key"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigurationError(
                f"audit signing key file {str(path)!r} is unreadable or not "
                '{"name": ..., "key": ...} JSON'
            ) from None
        signer = cls.from_seed(name, seed)
        signer.development = name.startswith(DEV_SIGNER_PREFIX)
        return signer

    @classmethod
    def development_key(cls, data_dir: Path, name_hint: str) -> Signer:
        """The generated development key under ``data_dir`` (created 0600 if missing)."""
        path = Path(data_dir) / DEV_KEY_FILE
        if not path.exists():
            seed = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
            name = DEV_SIGNER_PREFIX + "".join(c if c.isalnum() else "-" for c in name_hint)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{DEV_KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"name": name, "key": seed}, fh)
                with contextlib.suppress(FileExistsError):  # another process won: use theirs
                    os.link(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        signer = cls.from_file(path)
        signer.development = True
        return signer


class NoteVerifier:
    """Checks checkpoints with a public key alone (what an auditor holds)."""

    def __init__(self, name: str, public: bytes) -> None:
        self.name = name
        self.public = public
        self._key = Ed25519PublicKey.from_public_bytes(public)
        self._hash = _key_hash(name, public)

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(_ALG_ED25519 + self.public).decode()
        return f"{self.name}+{self._hash.hex()}+{encoded}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        try:
            # The base64 key may itself contain '+': split on the first two only.
            name, key_hash, encoded = vkey.strip().split("+", 2)
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise ConfigurationError("not a verifier key (name+hash+base64)") from None
        if len(raw) != 33 or raw[:1] != _ALG_ED25519:
            raise ConfigurationError("only Ed25519 verifier keys are supported")
        verifier = cls(name, raw[1:])
        if verifier._hash.hex() != key_hash:
            raise ConfigurationError("verifier key hash does not match its key")
        return verifier

    def verify_manifest(self, data: bytes, signature: str) -> bool:
        try:
            self._key.verify(base64.b64decode(signature, validate=True), _MANIFEST_LABEL + data)
        except (InvalidSignature, ValueError, binascii.Error):
            return False
        return True

    def verify(self, note: str) -> Checkpoint:
        """Parse and check ``note``; raises CheckpointError when anything is off."""
        body, sep, signatures = note.partition("\n\n")
        if not sep:
            raise CheckpointError("checkpoint has no signature block")
        body += "\n"
        ok = False
        for line in signatures.splitlines():
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != _DASH or parts[1] != self.name:
                continue
            try:
                blob = base64.b64decode(parts[2], validate=True)
            except (ValueError, binascii.Error):
                raise CheckpointError("malformed signature line") from None
            if blob[:4] != self._hash:
                continue
            try:
                self._key.verify(blob[4:], body.encode())
            except InvalidSignature:
                raise CheckpointError("checkpoint signature does not verify") from None
            ok = True
        if not ok:
            raise CheckpointError(f"checkpoint carries no signature by {self.name!r}")
        return parse_body(body, note)


def parse_body(body: str, note: str) -> Checkpoint:
    lines = body.split("\n")
    try:
        origin, size_text, root_text, stamp = lines[0], lines[1], lines[2], lines[3]
        size = int(size_text)
        root = base64.b64decode(root_text, validate=True)
        if not stamp.startswith("timestamp "):
            raise ValueError
        timestamp = int(stamp.removeprefix("timestamp "))
    except (IndexError, ValueError, binascii.Error):
        raise CheckpointError("checkpoint body does not parse") from None
    if size < 0 or len(root) != 32 or str(size) != size_text:
        raise CheckpointError("checkpoint body does not parse")
    return Checkpoint(origin, size, root, timestamp, note)


class Anchor(Protocol):
    """An anchor store: checkpoints written once, out of the database's reach."""

    def publish(self, checkpoint: Checkpoint) -> None: ...

    def notes(self) -> list[str]: ...


class DirectoryAnchor:
    """Checkpoints copied to a directory, each file written once and made read-only.

    Point it at storage the database administrators cannot write (another
    host's mount, a WORM volume); S3 Object Lock is the stronger option.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"DirectoryAnchor({str(self.path)!r})"

    def publish(self, checkpoint: Checkpoint) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"checkpoint-{checkpoint.size:020d}-{checkpoint.timestamp:012d}.txt"
        target = self.path / name
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            return  # written once: never overwritten
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(checkpoint.note)

    def notes(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return [p.read_text("utf-8") for p in sorted(self.path.glob("checkpoint-*.txt"))]
