"""Token verification basics (the full JWT battery comes with access control)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from soc2kit.authn.tokens import TokenVerifier
from soc2kit.errors import AuthenticationError, ConfigurationError
from soc2kit.settings import Settings

ISS, AUD = "https://id.example.test/", "api://invoices"


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rk1", "alg": "RS256"}, private=True)


@pytest.fixture
def verifier(rsa_key: RSAKey, tmp_path: Path) -> TokenVerifier:
    jwks = {"keys": [rsa_key.as_dict(private=False)]}
    return TokenVerifier(
        Settings(
            environment="test", data_dir=tmp_path, oidc_issuer=ISS, oidc_audience=AUD, jwks=jwks
        )
    )


def sign(
    key: RSAKey | ECKey | OctKey,
    alg: str = "RS256",
    header: dict[str, object] | None = None,
    **claims: object,
) -> str:
    now = int(time.time())
    body = {
        "iss": ISS,
        "aud": AUD,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "roles": ["clerk"],
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": key.kid, **(header or {})}, body, key, algorithms=[alg])


def test_valid_token_gives_a_principal(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    p = verifier.verify(sign(rsa_key, tenant="acme", jti="t1", scope="read write"))
    assert (p.subject, p.issuer, p.tenant, p.token_id) == ("alice", ISS, "acme", "t1")
    assert p.roles == frozenset({"clerk"}) and p.scopes == frozenset({"read", "write"})
    assert p.auth_method == "oidc"


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 120},
        {"exp": None},
        {"aud": "api://other"},
        {"aud": None},
        {"iss": "https://evil.example/"},
        {"iss": None},
        {"sub": None},
        {"nbf": int(time.time()) + 600},
        {"iat": int(time.time()) + 600},
    ],
)
def test_bad_claims_are_rejected(
    verifier: TokenVerifier, rsa_key: RSAKey, claims: dict[str, object]
) -> None:
    with pytest.raises(AuthenticationError):
        verifier.verify(sign(rsa_key, **claims))


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_rejected(verifier: TokenVerifier, alg: str) -> None:
    now = int(time.time())
    token = f"{_b64({'alg': alg})}.{_b64({'iss': ISS, 'aud': AUD, 'sub': 'a', 'exp': now + 60})}."
    with pytest.raises(AuthenticationError):
        verifier.verify(token)


def raw_sign(
    header: dict[str, object], claims: dict[str, object], signer: Callable[[bytes], bytes]
) -> str:
    """Forge a compact JWS by hand: joserfc rightly refuses to produce these."""
    signing_input = f"{_b64(header)}.{_b64(claims)}".encode()
    sig = base64.urlsafe_b64encode(signer(signing_input)).rstrip(b"=").decode()
    return f"{signing_input.decode()}.{sig}"


def rsa_signer(key: RSAKey) -> Callable[[bytes], bytes]:
    private = key.private_key
    assert private is not None
    return lambda data: private.sign(data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]


def good_claims() -> dict[str, object]:
    now = int(time.time())
    return {"iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "exp": now + 300}


def test_hs256_signed_with_the_public_key_is_rejected(
    verifier: TokenVerifier, rsa_key: RSAKey
) -> None:
    pem = rsa_key.as_pem(private=False)
    forged = raw_sign(
        {"alg": "HS256", "kid": "rk1"},
        good_claims(),
        lambda data: hmac.new(pem, data, hashlib.sha256).digest(),
    )
    with pytest.raises(AuthenticationError):
        verifier.verify(forged)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("jku", "https://evil.example/jwks"),
        ("x5u", "https://evil.example/cert"),
        ("jwk", {"kty": "oct", "k": "AAAA"}),
        ("x5c", ["MIIB"]),
    ],
)
def test_key_carrying_headers_are_refused(
    verifier: TokenVerifier, rsa_key: RSAKey, header: str, value: object
) -> None:
    # Correctly signed by the trusted key: the header alone must cause rejection.
    token = raw_sign(
        {"alg": "RS256", "kid": "rk1", header: value}, good_claims(), rsa_signer(rsa_key)
    )
    with pytest.raises(AuthenticationError):
        verifier.verify(token)


def test_unknown_crit_is_rejected(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    token = raw_sign(
        {"alg": "RS256", "kid": "rk1", "crit": ["exp2"], "exp2": 1},
        good_claims(),
        rsa_signer(rsa_key),
    )
    with pytest.raises(AuthenticationError):
        verifier.verify(token)


def test_hand_signed_control_token_is_accepted(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    # Proves raw_sign makes valid tokens, so the rejections above are about the header.
    token = raw_sign({"alg": "RS256", "kid": "rk1"}, good_claims(), rsa_signer(rsa_key))
    assert verifier.verify(token).subject == "alice"


def test_tampered_signature_and_payload_are_rejected(
    verifier: TokenVerifier, rsa_key: RSAKey
) -> None:
    token = sign(rsa_key)
    head, payload, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    other = _b64({**json.loads(base64.urlsafe_b64decode(payload + "==")), "sub": "root"})
    for bad in (
        f"{head}.{payload}.{flipped}",
        f"{head}.{other}.{sig}",
        f"{head}.{payload}.",
        token[:-10],
        "a.b",
        "",
        "x" * 9000,
    ):
        with pytest.raises(AuthenticationError):
            verifier.verify(bad)


def test_unknown_key_is_rejected(verifier: TokenVerifier) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "rk1"}, private=True)
    with pytest.raises(AuthenticationError):
        verifier.verify(sign(stranger))


def test_duplicate_header_keys_are_rejected(verifier: TokenVerifier, rsa_key: RSAKey) -> None:
    _, payload, sig = sign(rsa_key).split(".")
    dup = base64.urlsafe_b64encode(b'{"alg":"RS256","alg":"none"}').rstrip(b"=").decode()
    with pytest.raises(AuthenticationError):
        verifier.verify(f"{dup}.{payload}.{sig}")


def test_dev_keyring_is_created_once_with_private_permissions(tmp_path: Path) -> None:
    settings = Settings(environment="development", data_dir=tmp_path)
    first = TokenVerifier(settings)
    token = first.mint_dev_token("bob", ["clerk"])
    second = TokenVerifier(settings)
    assert second.verify(token).subject == "bob"
    key_file = tmp_path / "dev-signing-key.json"
    assert key_file.stat().st_mode & 0o077 == 0
    assert str(first.dev_key.kid).startswith("soc2kit-dev-")  # type: ignore[union-attr]


def test_dev_tokens_are_refused_with_real_keys(verifier: TokenVerifier) -> None:
    with pytest.raises(ConfigurationError):
        verifier.mint_dev_token("bob")


def test_production_without_keys_refuses_to_build(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(Settings(environment="production", data_dir=tmp_path))
