"""Field-level encryption (work in progress: the AEAD format and codec are in place;
the SQLAlchemy types, keyring and rotation jobs follow)."""

from soc2kit.crypto.aead import (
    FORMAT_V1,
    TEXT_PREFIX,
    DataKey,
    FieldContext,
    decrypt,
    encrypt,
    from_text,
    key_id_of,
    to_text,
)
from soc2kit.crypto.blind import BlindIndexKey, blind_index
from soc2kit.crypto.codec import decode_value, encode_value
from soc2kit.crypto.errors import CryptoError, DecryptionError, UnknownKeyError

__all__ = [
    "FORMAT_V1",
    "TEXT_PREFIX",
    "BlindIndexKey",
    "CryptoError",
    "DataKey",
    "DecryptionError",
    "FieldContext",
    "UnknownKeyError",
    "blind_index",
    "decode_value",
    "decrypt",
    "encode_value",
    "encrypt",
    "from_text",
    "key_id_of",
    "to_text",
]
