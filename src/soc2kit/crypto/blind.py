"""Blind indexes: search encrypted columns by equality without decrypting.

``version(1) || HMAC-SHA256(K, normalize(value))[:length]`` where K is derived
with HKDF from the index root key on a branch (``soc2kit:fle:bidx:v1``) that
never meets the encryption subkeys, per tenant, table, column and index
version. Equal values give equal indexes (that is the point, and the leak:
equality and frequency are visible to whoever reads the column).
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from soc2kit.crypto.aead import FieldContext, pae

_BIDX_INFO = b"soc2kit:fle:bidx:v1"

NORMALIZERS: dict[str, Callable[[str], str]] = {
    "none": lambda v: v,
    "casefold": lambda v: unicodedata.normalize("NFKC", v).casefold(),
    "nfkc": lambda v: unicodedata.normalize("NFKC", v),
    "strip": lambda v: v.strip(),
    "casefold_strip": lambda v: unicodedata.normalize("NFKC", v).strip().casefold(),
}


@dataclass(slots=True)
class BlindIndexKey:
    """An index root key (32 bytes) and its version byte; derived keys are cached."""

    version: int
    material: bytes = field(repr=False)
    _derived: dict[tuple[str | None, str, str], bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.version <= 255:
            raise ValueError("blind index versions are 1..255")
        if len(self.material) != 32:
            raise ValueError("blind index root keys are 32 bytes")

    def key_for(self, context: FieldContext) -> bytes:
        place = (context.tenant, context.table, context.column)  # cheap lookup key
        derived = self._derived.get(place)
        if derived is None:
            info = _BIDX_INFO + pae(context.scope(), bytes((self.version,)))
            derived = HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(self.material)
            if len(self._derived) >= 4096:
                self._derived.clear()  # bounded; re-derived on demand
            self._derived[place] = derived
        return derived


def blind_index(
    key: BlindIndexKey,
    value: str,
    context: FieldContext,
    normalize: str | Callable[[str], str] = "none",
    length: int = 16,
) -> bytes:
    """The blind index of ``value`` for ``context`` (row identity is ignored by design)."""
    if not 8 <= length <= 32:
        raise ValueError("blind index length is 8..32 bytes")
    norm = NORMALIZERS[normalize] if isinstance(normalize, str) else normalize
    mac = hmac.new(key.key_for(context), norm(value).encode("utf-8"), hashlib.sha256).digest()
    return bytes((key.version,)) + mac[:length]
