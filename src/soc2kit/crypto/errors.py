"""Crypto error types. Messages never contain plaintext, ciphertext or key material."""

from __future__ import annotations

from sqlalchemy.exc import DontWrapMixin

from soc2kit.errors import Soc2kitError


class CryptoError(Soc2kitError, DontWrapMixin):
    """Base class of field-encryption errors (raised as is, not wrapped by SQLAlchemy)."""


class DecryptionError(CryptoError):
    """A stored value failed to decrypt: malformed, tampered, moved, or wrong key.

    Never a fallback to plaintext: a value with a valid header that fails
    authentication is always this error.
    """


class UnknownKeyError(DecryptionError):
    """The value names a key id this keyring does not hold (or no longer holds)."""


class KeyDestroyedError(DecryptionError):
    """The value's data key was destroyed (crypto-shredded): it is unrecoverable by design."""


class KeyUnavailableError(CryptoError):
    """A data key could not be unwrapped or loaded: wrong KEK, KMS unreachable, or refused."""


class QueryGuardError(CryptoError):
    """A query compared, searched or ordered by an encrypted column (use its blind index)."""
