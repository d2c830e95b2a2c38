"""Field-level encryption for SQLAlchemy models: AEAD bound to its row, keys that rotate.

``Encrypted(type_)`` columns are sealed with AES-256-GCM under data keys from
the :class:`Keyring` that ``install()`` attaches; ``BlindIndex`` columns make
them searchable by equality. See docs/encryption.md.
"""

from soc2kit._ids import uuid7
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
from soc2kit.crypto.errors import (
    CryptoError,
    DecryptionError,
    KeyDestroyedError,
    KeyUnavailableError,
    QueryGuardError,
    UnknownKeyError,
)
from soc2kit.crypto.keyring import KeyInfo, Keyring, KeyState
from soc2kit.crypto.orm import BlindIndex, Encrypted, blind_index_of
from soc2kit.crypto.providers import KeyProvider, LocalKeyProvider, WrappedKey
from soc2kit.crypto.service import ColumnStatus, FieldEncryption, JobResult

__all__ = [
    "FORMAT_V1",
    "TEXT_PREFIX",
    "BlindIndex",
    "BlindIndexKey",
    "ColumnStatus",
    "CryptoError",
    "DataKey",
    "DecryptionError",
    "Encrypted",
    "FieldContext",
    "FieldEncryption",
    "JobResult",
    "KeyDestroyedError",
    "KeyInfo",
    "KeyProvider",
    "KeyState",
    "KeyUnavailableError",
    "Keyring",
    "LocalKeyProvider",
    "QueryGuardError",
    "UnknownKeyError",
    "WrappedKey",
    "blind_index",
    "blind_index_of",
    "decode_value",
    "decrypt",
    "encode_value",
    "encrypt",
    "from_text",
    "key_id_of",
    "to_text",
    "uuid7",
]
