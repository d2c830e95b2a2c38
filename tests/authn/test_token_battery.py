"""The JWT battery: kid abuse, signature edge cases, clock boundaries, encoding, typ, HS256."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey, OctKey, RSAKey
from tests.authn.jwt_helpers import (
    AUD,
    ISS,
    NOW,
    FakeClock,
    JwksServer,
    b64,
    b64json,
    claims,
    ec_key,
    public_jwks,
    raw_sign,
    sign,
)

from soc2kit.authn.tokens import TokenVerifier
from soc2kit.errors import AuthenticationError, ConfigurationError
from soc2kit.settings import Settings

EC = ec_key("ec1")
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def verifier_for(
    tmp_path: Path, *keys: RSAKey | ECKey, clock: FakeClock | None = None, **overrides: Any
) -> TokenVerifier:
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": tmp_path,
        "oidc_issuer": ISS,
        "oidc_audience": AUD,
        "jwks": public_jwks(*(keys or (EC,))),
        **overrides,
    }
    return TokenVerifier(Settings(**values), clock=clock or FakeClock())


def ec_signer(key: ECKey) -> Any:
    private = key.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)

    def signer(data: bytes) -> bytes:
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return signer


def test_control_hand_signed_es256_is_accepted(tmp_path: Path) -> None:
    # Proves raw_sign + ec_signer make valid tokens, so the rejections below are real.
    token = raw_sign({"alg": "ES256", "kid": "ec1"}, claims(), ec_signer(EC))
    assert verifier_for(tmp_path).verify(token).subject == "alice"


# kid abuse --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "k" * 5000,  # over-long
        "../../../../etc/passwd",
        "/dev/null",
        "..\\..\\windows\\win.ini",
        "' OR '1'='1' --",
        "ec1'; DROP TABLE soc2kit_api_keys; --",
        "ec1\x00",
        "ec1\n",
        "",
        42,
        ["ec1"],
        None,  # no kid but two keys: ambiguous
    ],
)
def test_hostile_kids_are_rejected(tmp_path: Path, kid: object) -> None:
    other = ec_key("ec2")
    verifier = verifier_for(tmp_path, EC, other)
    token = raw_sign({"alg": "ES256", "kid": kid}, claims(), ec_signer(EC))
    with pytest.raises(AuthenticationError):
        verifier.verify(token)


def test_hostile_kids_never_reach_the_network(jwks_server: JwksServer, tmp_path: Path) -> None:
    jwks_server.json("/jwks", public_jwks(EC))
    clock = FakeClock()
    verifier = TokenVerifier(
        Settings(
            environment="test",
            data_dir=tmp_path,
            oidc_issuer=ISS,
            oidc_audience=AUD,
            jwks_url=jwks_server.url("/jwks"),
        ),
        clock=clock,
        jwks_clock=clock,
    )
    verifier.verify(sign(EC))
    clock.advance(60)
    for kid in ("k" * 300, "ec1\x00", "", 7):
        with pytest.raises(AuthenticationError, match="kid"):
            verifier.verify(raw_sign({"alg": "ES256", "kid": kid}, claims(), ec_signer(EC)))
    assert jwks_server.hits["/jwks"] == 1  # malformed kids are refused before any lookup


def test_without_kid_a_single_key_is_used(tmp_path: Path) -> None:
    token = raw_sign({"alg": "ES256"}, claims(), ec_signer(EC))
    assert verifier_for(tmp_path).verify(token).subject == "alice"


# signatures and key types ---------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        bytes(64),  # r = s = 0 (CVE-2022-21449, "psychic signatures")
        P256_ORDER.to_bytes(32, "big") * 2,  # r = s = n
        b"\x00" * 63 + b"\x01",
        b"",
        b"\x30\x06\x02\x01\x00\x02\x01\x00",  # DER instead of raw r||s
    ],
)
def test_es256_degenerate_signatures_are_rejected(tmp_path: Path, signature: bytes) -> None:
    token = raw_sign({"alg": "ES256", "kid": "ec1"}, claims(), lambda _data: signature)
    if not signature:
        token += "A"  # an empty segment is caught as malformed; keep the signature path
    with pytest.raises(AuthenticationError):
        verifier_for(tmp_path).verify(token)


def test_algorithm_must_match_the_key_type(tmp_path: Path, rsa_signing_key: RSAKey) -> None:
    # An RS256 token naming the EC key's kid, and an ES256 token naming the RSA key's kid.
    rsa_twin = RSAKey.import_key({**rsa_signing_key.as_dict(private=True), "kid": "ec1"})
    ec_twin = ECKey.import_key({**EC.as_dict(private=True), "kid": "rsa1"})
    rsa_for_ec = raw_sign(
        {"alg": "RS256", "kid": "ec1"},
        claims(),
        lambda data: rsa_twin.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256()),  # type: ignore[union-attr]
    )
    ec_for_rsa = raw_sign({"alg": "ES256", "kid": "rsa1"}, claims(), ec_signer(ec_twin))
    bare_rsa = {**rsa_signing_key.as_dict(private=False)}
    bare_rsa.pop("alg")  # no JWK alg pin: only the key type can refuse
    bare_ec = {**EC.as_dict(private=False)}
    bare_ec.pop("alg")
    verifier = TokenVerifier(
        Settings(
            environment="test",
            data_dir=tmp_path,
            oidc_issuer=ISS,
            oidc_audience=AUD,
            jwks={"keys": [bare_rsa, bare_ec]},
        ),
        clock=FakeClock(),
    )
    for token in (rsa_for_ec, ec_for_rsa):
        with pytest.raises(AuthenticationError):
            verifier.verify(token)
    assert verifier.verify(sign(rsa_signing_key, "RS256")).subject == "alice"


def test_the_jwk_alg_pins_the_algorithm(tmp_path: Path, rsa_signing_key: RSAKey) -> None:
    # The key says RS256; a PS256 token (also allowlisted) under its kid is refused.
    verifier = verifier_for(tmp_path, rsa_signing_key, jwt_algorithms=["RS256", "PS256", "ES256"])
    private = rsa_signing_key.private_key
    pss = raw_sign(
        {"alg": "PS256", "kid": "rsa1"},
        claims(),
        lambda data: private.sign(  # type: ignore[union-attr]
            data,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        ),
    )
    with pytest.raises(AuthenticationError):
        verifier.verify(pss)


def test_duplicate_claim_names_are_rejected(tmp_path: Path) -> None:
    # Signed correctly; parsers disagree on which "sub" wins, so neither may.
    payload = json.dumps(claims())[:-1] + ', "sub": "root"}'
    signing_input = f"{b64json({'alg': 'ES256', 'kid': 'ec1'})}.{b64(payload.encode())}"
    token = f"{signing_input}.{b64(ec_signer(EC)(signing_input.encode()))}"
    with pytest.raises(AuthenticationError):
        verifier_for(tmp_path).verify(token)


# clock boundaries (leeway 30 s) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "offset", "accepted"),
    [
        ("iat", 30, True),  # exactly at the leeway
        ("iat", 31, False),  # beyond it
        ("iat", 3600, False),
        ("nbf", 30, True),
        ("nbf", 31, False),
        ("exp", -29, True),
        ("exp", -30, False),  # exp is exclusive: now - leeway is already expired
    ],
)
def test_time_claims_at_and_beyond_the_leeway(
    tmp_path: Path, claim: str, offset: int, accepted: bool
) -> None:
    verifier = verifier_for(tmp_path, clock=FakeClock(NOW))
    token = sign(EC, **{claim: NOW + offset})
    if accepted:
        assert verifier.verify(token).subject == "alice"
    else:
        with pytest.raises(AuthenticationError):
            verifier.verify(token)


def test_leeway_is_the_setting(tmp_path: Path) -> None:
    verifier = verifier_for(tmp_path, clock=FakeClock(NOW), jwt_leeway_seconds=0)
    assert verifier.verify(sign(EC, iat=NOW)).subject == "alice"
    with pytest.raises(AuthenticationError):
        verifier.verify(sign(EC, iat=NOW + 1))


@pytest.mark.parametrize(
    "claim_value",
    [{"iat": "1800000000"}, {"nbf": True}, {"exp": "never"}, {"iat": None, "exp": 1e400}],
)
def test_non_numeric_times_are_rejected(tmp_path: Path, claim_value: dict[str, Any]) -> None:
    body = {**claims(), **claim_value}
    token = raw_sign({"alg": "ES256", "kid": "ec1"}, body, ec_signer(EC))
    with pytest.raises(AuthenticationError):
        verifier_for(tmp_path).verify(token)


# encoding -----------------------------------------------------------------------------


@pytest.mark.parametrize("segment", [0, 1, 2])
@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s[:5] + "!" + s[6:],  # outside the alphabet
        lambda s: s[:5] + "+" + s[6:],  # standard base64, not base64url
        lambda s: s[:5] + "/" + s[6:],
        lambda s: s + "=",  # padding
        lambda s: s + "A" * ((1 - len(s)) % 4),  # a length no base64 has (4n + 1)
        lambda s: s[:5] + " " + s[6:],
        lambda s: s[:5] + "é" + s[6:],
        lambda s: "",
    ],
)
def test_bad_base64url_in_any_segment_is_rejected(
    tmp_path: Path, segment: int, damage: Any
) -> None:
    parts = sign(EC).split(".")
    parts[segment] = damage(parts[segment])
    with pytest.raises(AuthenticationError):
        verifier_for(tmp_path).verify(".".join(parts))


@pytest.mark.parametrize(
    "header",
    [b"not json", b"[1,2]", b'"alg"', b"\xff\xfe", b'{"alg":"ES256","kid":"ec1"'],
)
def test_undecodable_headers_are_rejected(tmp_path: Path, header: bytes) -> None:
    _, payload, sig = sign(EC).split(".")
    with pytest.raises(AuthenticationError):
        verifier_for(tmp_path).verify(f"{b64(header)}.{payload}.{sig}")


def test_extra_segments_are_rejected(tmp_path: Path) -> None:
    token = sign(EC)
    for bad in (token + ".AAAA", token + ".AAAA.AAAA", "a.b.c.d.e"):
        with pytest.raises(AuthenticationError):
            verifier_for(tmp_path).verify(bad)


# typ ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typ", "accepted"),
    [
        ("at+jwt", True),
        ("AT+JWT", True),
        ("application/at+jwt", True),
        ("JWT", False),  # an ID token presented as an access token
        ("id_token+jwt", False),
        (None, False),
        (7, False),
    ],
)
def test_require_typ(tmp_path: Path, typ: object, accepted: bool) -> None:
    verifier = verifier_for(tmp_path, require_typ="at+jwt")
    token = raw_sign({"alg": "ES256", "kid": "ec1", "typ": typ}, claims(), ec_signer(EC))
    if accepted:
        assert verifier.verify(token).subject == "alice"
    else:
        with pytest.raises(AuthenticationError, match="type"):
            verifier.verify(token)


def test_typ_is_not_required_by_default(tmp_path: Path) -> None:
    token = raw_sign({"alg": "ES256", "kid": "ec1", "typ": "JWT"}, claims(), ec_signer(EC))
    assert verifier_for(tmp_path).verify(token).subject == "alice"


# HS256 ----------------------------------------------------------------------------------

SECRET = "an-hs256-secret-of-at-least-32-bytes!"


def test_hs256_works_only_with_its_own_secret(tmp_path: Path, rsa_signing_key: RSAKey) -> None:
    verifier = verifier_for(
        tmp_path,
        rsa_signing_key,
        jwt_algorithms=["RS256", "HS256"],
        jwt_hs256_secret=SECRET,
    )
    good = sign(OctKey.import_key(SECRET.encode()), "HS256", header={"kid": None})
    assert verifier.verify(good).subject == "alice"
    # Key confusion: an HMAC keyed with the RSA public key (PEM) must fail.
    pem = rsa_signing_key.as_pem(private=False)
    forged = raw_sign(
        {"alg": "HS256", "kid": "rsa1"},
        claims(),
        lambda data: hmac.new(pem, data, hashlib.sha256).digest(),
    )
    other = sign(OctKey.import_key(b"x" * 40), "HS256", header={"kid": None})
    for token in (forged, other):
        with pytest.raises(AuthenticationError):
            verifier.verify(token)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jwt_algorithms": ["ES256", "HS256"]}, "jwt_hs256_secret is not set"),
        ({"jwt_hs256_secret": SECRET}, "not in jwt_algorithms"),
        ({"jwt_algorithms": ["HS256"], "jwt_hs256_secret": "too-short"}, "at least 32 bytes"),
        ({"jwt_algorithms": ["HS384"], "jwt_hs256_secret": SECRET}, "only HS256"),
    ],
)
def test_hs256_misconfiguration_refuses_to_start(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        verifier_for(tmp_path, **overrides)


def test_hs256_is_refused_in_production(tmp_path: Path) -> None:
    settings = Settings(
        environment="production",
        data_dir=tmp_path,
        oidc_issuer=ISS,
        oidc_audience=AUD,
        jwks=public_jwks(EC),
        jwt_algorithms=["ES256", "HS256"],
        jwt_hs256_secret=SECRET,
    )
    with pytest.raises(ConfigurationError, match="production"):
        TokenVerifier(settings)


def test_no_failure_reason_contains_the_token(tmp_path: Path) -> None:
    verifier = verifier_for(tmp_path)
    good = sign(EC)
    head, payload, sig = good.split(".")
    bad_tokens = [
        f"{head}.{payload}.{sig[:-4]}AAAA",
        f"{head}.{b64json({**claims(), 'sub': 'root'})}.{sig}",
        "x" * 9000,
        base64.urlsafe_b64encode(b"{}").decode() + ".e30.AA",
    ]
    for token in bad_tokens:
        with pytest.raises(AuthenticationError) as info:
            verifier.verify(token)
        for part in token.split("."):
            if len(part) >= 8:
                assert part not in info.value.reason
