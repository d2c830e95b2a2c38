"""Signing keys from configuration, a file, or the identity provider over HTTPS.

Remote keys (``jwks_url``, or the ``jwks_uri`` of the issuer's OpenID
discovery document) are cached for a TTL. An unknown ``kid`` may trigger a
refetch, but fetch attempts are at least ``min_interval`` seconds apart and
single-flight, so a flood of tokens with random ``kid`` values never becomes a
flood of requests to the identity provider. A failed refresh keeps the last
keys that worked, for at most ``max_stale`` seconds, then verification fails
closed.

Fetching uses the standard library rather than httpx: one GET with a timeout,
a size cap and no redirects needs no extra runtime dependency, and an opener
assembled from only the proxy and HTTP(S) handlers can neither follow a
redirect nor open ``file:`` or ``ftp:`` URLs.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from soc2kit._version import __version__
from soc2kit.errors import ConfigurationError

log = logging.getLogger("soc2kit.authn.jwks")

PRIVATE_JWK_PARAMS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})
MIN_REFETCH_INTERVAL = 30.0
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BYTES = 256 * 1024
DEFAULT_MAX_STALE = 86400.0
_READ_CHUNK = 64 * 1024


class FetchError(Exception):
    """A key document could not be fetched or used. The message holds no response data."""


# URL policy ----------------------------------------------------------------------


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(host: str) -> IPAddress | None:
    """``host`` as an address, however it is spelled, or None for a name.

    The C resolver also accepts legacy IPv4 spellings (``2852039166``,
    ``0xa9.0xfe.0xa9.0xfe``) and IPv4-mapped IPv6; all are normalised so that
    none of them can slip a metadata address past the checks below.
    """
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _forbidden(ip: IPAddress) -> bool:
    return ip.is_link_local or ip.is_unspecified or ip.is_multicast


def resolved_problem(host: str) -> str | None:
    """Refuse a host name that resolves to a link-local (metadata) address.

    Checked right before each fetch. A resolver that answers differently a
    moment later (DNS rebinding) is not prevented; see docs/access-control.md.
    """
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return None  # the fetch itself reports the failure
    for info in infos:
        ip = _ip(str(info[4][0]).split("%")[0])
        if ip is not None and _forbidden(ip):
            return "resolves to a link-local, unspecified or multicast address"
    return None


def url_problem(url: str, *, allow_loopback_http: bool) -> str | None:
    """Why ``url`` may not serve keys, or None when it may.

    https only; plain http is accepted for a loopback host when
    ``allow_loopback_http`` (development and test). URLs with credentials and
    link-local hosts (cloud metadata endpoints) are refused.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a valid URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if not host:
        return "has no host"
    ip = _ip(host)
    if ip is not None and _forbidden(ip):
        return "points at a link-local, unspecified or multicast address"
    if parts.scheme == "https":
        return None
    loopback = host == "localhost" or (ip is not None and ip.is_loopback)
    if parts.scheme == "http" and allow_loopback_http and loopback:
        return None
    return "must use https (plain http only to a loopback host in development or test)"


# Fetching ------------------------------------------------------------------------


def _opener(url: str) -> urllib.request.OpenerDirector:
    """An opener with no redirect, file, ftp or data handler: a 3xx is just a failure."""
    opener = urllib.request.OpenerDirector()
    host = urlsplit(url).hostname or ""
    loopback = host == "localhost" or bool((ip := _ip(host)) and ip.is_loopback)
    # Environment proxies apply to the identity provider, never to a loopback host.
    opener.add_handler(urllib.request.ProxyHandler({} if loopback else None))
    opener.add_handler(urllib.request.HTTPHandler())
    opener.add_handler(urllib.request.HTTPSHandler(context=ssl.create_default_context()))
    return opener


def fetch_json(
    url: str,
    *,
    allow_loopback_http: bool,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Any:
    """GET ``url`` and parse JSON: 200 only, no redirects, bounded in time and size."""
    problem = url_problem(url, allow_loopback_http=allow_loopback_http)
    host = urlsplit(url).hostname or ""
    if problem is None and _ip(host) is None:
        problem = resolved_problem(host)
    if problem is not None:
        raise FetchError(f"key URL {problem}")
    request = urllib.request.Request(  # noqa: S310 - scheme checked by url_problem
        url, headers={"Accept": "application/json", "User-Agent": f"soc2kit/{__version__}"}
    )
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        response = _opener(url).open(request, timeout=timeout)
        if response is None:  # no handler took the scheme (url_problem already refuses it)
            raise FetchError("unsupported URL scheme")
        with response:
            if response.status != 200:
                raise FetchError(f"HTTP status {response.status}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError("response too large")
            total = 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchError("timed out")
                chunk = response.read(min(_READ_CHUNK, max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    raise FetchError("response too large")
    except FetchError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise FetchError(type(exc).__name__) from None
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise FetchError("response is not JSON") from None


# Key sets ------------------------------------------------------------------------


def import_keys(document: Any, *, strict: bool) -> KeySet:
    """The signing keys of a JWK Set document; raises ValueError with a safe message.

    Symmetric keys are always refused: HS256 has its own secret setting.
    ``strict`` (remote documents) also refuses private key material, which a
    genuine identity provider never publishes.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("is not a JWK set")
    usable: list[dict[str, Any]] = []
    for key in document["keys"]:
        if not isinstance(key, dict):
            continue
        if key.get("kty") == "oct":
            raise ValueError("holds a symmetric (oct) key; use jwt_hs256_secret for HS256")
        if strict and PRIVATE_JWK_PARAMS & key.keys():
            raise ValueError("holds private key material")
        if key.get("use", "sig") != "sig":
            continue
        usable.append(key)
    if not usable:
        raise ValueError("holds no signing keys")
    try:
        return KeySet.import_key_set({"keys": usable})
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"is not a valid JWK set ({type(exc).__name__})") from None


def read_jwks_file(path: Path) -> dict[str, Any]:
    """The JSON document in ``path``; ConfigurationError (no file content) when unusable."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"jwks_file cannot be read ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigurationError("jwks_file is not a JWK set")
    return data


class RemoteJWKS:
    """Keys fetched from a JWKS URL (or found through OpenID discovery), cached.

    ``keys()`` never does I/O. ``claim()`` reserves the next fetch for one
    caller, also without I/O and without waiting, so an async caller moves
    exactly that one fetch to a worker thread and everybody else carries on
    with the keys at hand; ``fetch_claimed()`` then fetches (blocking).
    ``refresh()`` is both, for blocking callers.
    """

    def __init__(
        self,
        *,
        jwks_url: str | None = None,
        issuer: str | None = None,
        allow_loopback_http: bool = False,
        ttl: float = 3600.0,
        min_interval: float = MIN_REFETCH_INTERVAL,
        max_stale: float = DEFAULT_MAX_STALE,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (jwks_url is None) == (issuer is None):
            raise ConfigurationError("RemoteJWKS needs exactly one of jwks_url or issuer")
        what, url = (
            ("jwks_url", jwks_url)
            if jwks_url is not None
            else ("oidc_issuer (discovery)", _discovery_url(issuer or ""))
        )
        problem = url_problem(url, allow_loopback_http=allow_loopback_http)
        if problem is not None:
            raise ConfigurationError(f"{what} {problem}")
        self._fixed_url = jwks_url
        self._issuer = issuer
        self._jwks_uri = jwks_url
        self._loopback_http = allow_loopback_http
        self._ttl = ttl
        self._min_interval = min_interval
        self._max_stale = max_stale
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._clock = clock
        self._state = threading.Lock()  # guards the claim only, never held during I/O
        self._keys: KeySet | None = None
        self._document: Any = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._in_flight = False
        self._generation = 0

    @property
    def generation(self) -> int:
        """Changes whenever the set of keys changes (cached verifications end with it)."""
        return self._generation

    def keys(self) -> KeySet | None:
        """The keys to verify with now, or None when none are known or they are too old."""
        keys = self._keys
        if keys is None or self._clock() - self._fetched_at > self._max_stale:
            return None
        return keys

    def claim(self, kid_known: bool) -> bool:
        """Reserve the next fetch if one is due and allowed now (never waits, no I/O).

        Due: no keys yet, the TTL is over, or ``kid_known`` is False. Allowed:
        no fetch in flight and none attempted in the last ``min_interval``
        seconds. A True answer obliges the caller to call :meth:`fetch_claimed`.
        """
        with self._state:
            if self._in_flight or not self._due(kid_known):
                return False
            self._in_flight = True
            self._attempted_at = self._clock()
            return True

    def fetch_claimed(self) -> bool:
        """Fetch after a successful :meth:`claim`; True when new keys were installed.

        A failure is logged (no response data) and the previous keys stay in use.
        """
        try:
            document = self._download()
            keys = import_keys(document, strict=True)
        except (FetchError, ValueError) as exc:
            if self._fixed_url is None:
                self._jwks_uri = None  # discover again next time
            log.warning("JWKS refresh failed (%s); keeping the last known keys", exc)
            return False
        else:
            if document != self._document:
                self._generation += 1
            self._document = document
            self._keys = keys
            self._fetched_at = self._clock()
            return True
        finally:
            with self._state:
                self._in_flight = False

    def refresh(self, kid_known: bool = True) -> bool:
        """Claim and fetch in one blocking call; False when no fetch was due or allowed."""
        return self.claim(kid_known) and self.fetch_claimed()

    def _due(self, kid_known: bool) -> bool:
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < self._min_interval:
            return False
        return self._keys is None or not kid_known or now - self._fetched_at >= self._ttl

    def _download(self) -> Any:
        if self._jwks_uri is None:
            self._jwks_uri = self._discover()
        return self._get(self._jwks_uri)

    def _discover(self) -> str:
        config = self._get(_discovery_url(self._issuer or ""))
        if not isinstance(config, dict) or config.get("issuer") != self._issuer:
            # OpenID Connect Discovery 1.0, section 4.3: the issuer must match exactly.
            raise FetchError("discovery document is for another issuer")
        uri = config.get("jwks_uri")
        if not isinstance(uri, str):
            raise FetchError("discovery document has no jwks_uri")
        problem = url_problem(uri, allow_loopback_http=self._loopback_http)
        if problem is not None:
            raise FetchError(f"discovered jwks_uri {problem}")
        return uri

    def _get(self, url: str) -> Any:
        return fetch_json(
            url,
            allow_loopback_http=self._loopback_http,
            timeout=self._timeout,
            max_bytes=self._max_bytes,
        )


def _discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"
