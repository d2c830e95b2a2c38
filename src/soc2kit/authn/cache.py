"""A bounded cache of verified bearer tokens, so a busy client pays one signature check.

Entries are keyed by the SHA-256 of the token (the cache never holds a token),
end at the token's ``exp`` or after ``max_ttl_seconds``, whichever comes first,
and are ignored once the signing keys change. Revocation is not the cache's
business: the authenticator checks it on every request, cached or not.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from soc2kit.authn.principal import Principal

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_TTL_SECONDS = 300.0


class VerifiedTokenCache:
    """LRU map from token digest to the principal its verification produced."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_ttl_seconds: float = DEFAULT_MAX_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1 or max_ttl_seconds <= 0:
            raise ValueError("max_entries and max_ttl_seconds must be positive")
        self._max_entries = max_entries
        self._max_ttl = max_ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[Principal, float, int]] = OrderedDict()

    def get(self, token: str, generation: int = 0) -> Principal | None:
        """The cached principal for ``token``, or None (expired and stale entries drop out)."""
        digest = _digest(token)
        now = self._clock()
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            principal, expires, entry_generation = entry
            if now >= expires or entry_generation != generation:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return principal

    def put(self, token: str, principal: Principal, generation: int = 0) -> None:
        """Remember a verified token until its ``exp`` (or the max TTL), evicting the LRU."""
        now = self._clock()
        expires = now + self._max_ttl
        if principal.expires_at is not None:
            expires = min(expires, float(principal.expires_at))
        if expires <= now:
            return
        digest = _digest(token)
        with self._lock:
            self._entries[digest] = (principal, expires, generation)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
