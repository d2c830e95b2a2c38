"""The JWT battery end to end: every forged or misused token against a running app.

tests/authn covers the verifier's logic unit by unit; here each attack goes
through HTTP into ``require()`` and is judged on the status and challenge, a
body that says only ``invalid_token``, a handler that never ran, an
``authn.failure`` event (anonymous: nothing the token claims is trusted) next
to its ``http.request`` event, and no token material in the audit table.

The verifier's wall clock is frozen at ``NOW`` so that the leeway boundaries
(30 s) are exact rather than racy.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
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
from tests.security.battery import (
    Attacker,
    audit_events,
    expect_audit,
    expect_no_token_material,
    expect_refusal,
    serving,
    settings_for,
)

import soc2kit
from soc2kit import Principal, public, require
from soc2kit.authn.tokens import TokenVerifier

EC = ec_key("ec1")
RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa1", "alg": "RS256"}, private=True)
EC2 = ec_key("ec2")  # a second ES256 key: a token without kid is ambiguous
ROGUE = ec_key("ec1")  # the attacker's own key, published under the trusted kid
ATTACKER = ec_key("attacker")
OKP = OKPKey.generate_key("Ed25519", parameters={"kid": "ec1", "alg": "EdDSA"}, private=True)
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
HS_SECRET = "an-hs256-secret-of-at-least-32-bytes!"
LEEWAY = 30

CALLS: Counter[str] = Counter()
"""Handler invocations of the module's apps (cleared before every test)."""

Signer = Callable[[bytes], bytes]
Served = tuple[TestClient, soc2kit.Kit]


# signing by hand ----------------------------------------------------------------------------


def es256(key: ECKey) -> Signer:
    private = key.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)

    def signer(data: bytes) -> bytes:
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return signer


def rsa(hash_: hashes.HashAlgorithm, pss: bool = False) -> Signer:
    private: Any = RSA.private_key
    pad = (
        padding.PSS(mgf=padding.MGF1(hash_), salt_length=hash_.digest_size)
        if pss
        else padding.PKCS1v15()
    )
    return lambda data: private.sign(data, pad, hash_)


def hmac_with(secret: bytes, digest: Any = hashlib.sha256) -> Signer:
    return lambda data: hmac.new(secret, data, digest).digest()


def es(header: dict[str, Any], body: dict[str, Any] | None = None, key: ECKey = EC) -> str:
    """A correctly ES256-signed token with exactly this header and body."""
    return raw_sign(header, claims() if body is None else body, es256(key))


def signed_text(header: dict[str, Any], payload: str) -> str:
    """A correctly ES256-signed token whose payload is ``payload`` verbatim."""
    signing_input = f"{b64json(header)}.{b64(payload.encode())}"
    return f"{signing_input}.{b64(es256(EC)(signing_input.encode()))}"


def attacker_certificate() -> x509.Certificate:
    private = ATTACKER.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "id.example.test")])
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )


CERT = attacker_certificate()


def mangle(token: str, segment: int, damage: Callable[[str], str]) -> str:
    parts = token.split(".")
    parts[segment] = damage(parts[segment])
    return ".".join(parts)


def flip_bit(segment: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return b64(bytes(raw))


# the apps -----------------------------------------------------------------------------------


def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
    kit.policy.grant("clerk", "invoices", "read")

    @app.get("/secret")
    def secret(p: Principal = require("invoices", "read")) -> dict[str, str]:
        CALLS["secret"] += 1
        return {"sub": p.subject}

    @app.get("/open", dependencies=[public("battery control")])
    def open_() -> dict[str, str]:
        CALLS["open"] += 1
        return {"ok": "open"}


def served_app(directory: Path, **overrides: Any) -> Iterator[Served]:
    settings = settings_for(
        directory, oidc_issuer=ISS, oidc_audience=AUD, jwks=public_jwks(EC, EC2, RSA), **overrides
    )
    with serving(settings, routes) as (client, kit):
        kit.tokens._clock = FakeClock(NOW)  # claims are judged at NOW, exactly
        yield client, kit


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from served_app(tmp_path_factory.mktemp("jwt"))


@pytest.fixture(scope="module")
def typ_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from served_app(tmp_path_factory.mktemp("typ"), require_typ="at+jwt")


@pytest.fixture(scope="module")
def hs_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from served_app(
        tmp_path_factory.mktemp("hs"),
        jwt_algorithms=["RS256", "ES256", "HS256"],
        jwt_hs256_secret=HS_SECRET,
    )


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


def accepted(served: Served, token: str) -> None:
    client, kit = served
    response = client.get("/secret", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert CALLS == {"secret": 1}
    expect_audit(kit, response.headers["x-request-id"], 200)


def refused(
    served: Served,
    headers: Any,
    reason: str,
    *,
    secrets: tuple[str, ...],
    error: str = "invalid_token",
    path: str = "/secret",
) -> dict[str, Any]:
    """All four checks for a request that must fail authentication."""
    client, kit = served
    rid = expect_refusal(client.get(path, headers=headers), 401, error)
    assert CALLS == {}
    failure = expect_audit(kit, rid, 401, "authn.failure")["authn.failure"]
    assert failure["reason"].startswith(reason), failure["reason"]
    assert failure["action"] == "authenticate"
    # Nothing a refused token claims is believed, not even in the audit trail.
    assert (failure["actor_type"], failure["actor_id"], failure["roles"]) == ("anonymous", None, [])
    assert failure["resource_type"] is None and failure["resource_id"] is None
    expect_no_token_material(kit, *secrets)
    return failure


def refused_token(served: Served, token: str, reason: str) -> None:
    header = f"Bearer {token}".encode("latin-1")  # bytes: tokens with non-ASCII octets too
    refused(served, {"Authorization": header}, reason, secrets=(token,))


# controls: the forging helpers make tokens the app accepts --------------------------------


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: sign(EC), id="es256-joserfc"),
        pytest.param(lambda: es({"alg": "ES256", "kid": "ec1"}), id="es256-by-hand"),
        pytest.param(lambda: sign(RSA, "RS256"), id="rs256-joserfc"),
        pytest.param(
            lambda: raw_sign({"alg": "RS256", "kid": "rsa1"}, claims(), rsa(hashes.SHA256())),
            id="rs256-by-hand",
        ),
        pytest.param(lambda: sign(EC, exp=NOW - LEEWAY + 1), id="exp-inside-leeway"),
        pytest.param(lambda: sign(EC, nbf=NOW + LEEWAY), id="nbf-at-leeway"),
        pytest.param(lambda: sign(EC, iat=NOW + LEEWAY), id="iat-at-leeway"),
        pytest.param(lambda: sign(EC, aud=[AUD, "api://other"]), id="aud-list-with-ours"),
        pytest.param(lambda: sign(EC2), id="second-key"),
        pytest.param(
            lambda: raw_sign({"alg": "RS256"}, claims(), rsa(hashes.SHA256())),
            id="no-kid-one-rs256-key",
        ),
    ],
)
def test_controls_are_accepted(app: Served, token: Callable[[], str]) -> None:
    accepted(app, token())


# alg ------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_unsigned(app: Served, alg: str) -> None:
    token = raw_sign({"alg": alg, "kid": "ec1"}, claims(), lambda _: b"")
    assert token.endswith(".")
    refused_token(app, token, "malformed base64url segment")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_with_a_real_signature(app: Served, alg: str) -> None:
    refused_token(app, es({"alg": alg, "kid": "ec1"}), "algorithm not allowed")


@pytest.mark.parametrize(
    "alg", [None, "", "es256", "ES256 ", ["ES256"], {"alg": "ES256"}], ids=repr
)
def test_alg_missing_or_misspelled(app: Served, alg: object) -> None:
    header = {"kid": "ec1"} if alg is None else {"alg": alg, "kid": "ec1"}
    refused_token(app, es(header), "algorithm not allowed")


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(RSA.as_pem(private=False), id="rsa-pem"),
        pytest.param(EC.as_pem(private=False), id="ec-pem"),
        pytest.param(json.dumps(RSA.as_dict(private=False)).encode(), id="rsa-jwk-json"),
        pytest.param(
            base64.urlsafe_b64decode(str(RSA.as_dict(private=False)["n"]) + "=="), id="rsa-modulus"
        ),
    ],
)
def test_hs256_signed_with_a_public_key(app: Served, hs_app: Served, secret: bytes) -> None:
    for kid in ("rsa1", "ec1"):
        token = raw_sign({"alg": "HS256", "kid": kid}, claims(), hmac_with(secret))
        refused_token(app, token, "algorithm not allowed")  # HS256 off: the allowlist
        # HS256 on: the token is checked with the HS256 secret only, never a public key.
        refused_token(hs_app, token, "signature or format invalid")


def test_hs256_with_its_own_secret_is_the_control(hs_app: Served) -> None:
    accepted(hs_app, sign(OctKey.import_key(HS_SECRET.encode()), "HS256", header={"kid": None}))
    CALLS.clear()
    other = raw_sign({"alg": "HS256"}, claims(), hmac_with(b"x" * 40))
    refused_token(hs_app, other, "signature or format invalid")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(
            lambda: raw_sign({"alg": "RS384", "kid": "rsa1"}, claims(), rsa(hashes.SHA384())),
            "algorithm not allowed",
            id="rs384-not-allowlisted",
        ),
        pytest.param(
            lambda: raw_sign(
                {"alg": "PS256", "kid": "rsa1"}, claims(), rsa(hashes.SHA256(), pss=True)
            ),
            "algorithm not allowed",
            id="ps256-not-allowlisted",
        ),
        pytest.param(
            lambda: raw_sign(
                {"alg": "HS512", "kid": "ec1"}, claims(), hmac_with(b"k" * 64, hashlib.sha512)
            ),
            "algorithm not allowed",
            id="hs512",
        ),
        pytest.param(
            lambda: raw_sign({"alg": "ES384", "kid": "ec1"}, claims(), es256(EC)),
            "algorithm not allowed",
            id="es384",
        ),
        pytest.param(
            lambda: raw_sign({"alg": "RS256", "kid": "ec1"}, claims(), rsa(hashes.SHA256())),
            "no key for this kid",
            id="rs256-under-the-ec-kid",
        ),
        pytest.param(
            lambda: es({"alg": "ES256", "kid": "rsa1"}),
            "no key for this kid",
            id="es256-under-the-rsa-kid",
        ),
        pytest.param(
            lambda: raw_sign(
                {"alg": "EdDSA", "kid": "ec1"},
                claims(),
                lambda data: OKP.private_key.sign(data),  # type: ignore[union-attr]
            ),
            "no key for this kid",
            id="eddsa-allowlisted-but-not-the-keys-alg",
        ),
        pytest.param(
            lambda: es({"alg": "ES256", "kid": "ec1"}, key=ROGUE),
            "signature or format invalid",
            id="es256-by-another-key-under-our-kid",
        ),
        pytest.param(
            lambda: es({"alg": "ES256"}),
            "no key for this kid",
            id="no-kid-two-es256-keys",
        ),
    ],
)
def test_algorithm_and_key_mismatches(app: Served, token: Callable[[], str], reason: str) -> None:
    refused_token(app, token(), reason)


def test_a_development_token_is_refused_where_real_keys_are_configured(
    app: Served, tmp_path: Path
) -> None:
    # Signed by a soc2kit development keyring (a laptop's): not one of the configured keys.
    laptop = TokenVerifier(settings_for(tmp_path), clock=FakeClock(NOW))
    token = laptop.mint_dev_token("alice", ["clerk"])
    assert laptop.verify(token).subject == "alice"  # genuine, for the keyring that made it
    refused_token(app, token, "no key for this kid")


# kid ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kid", "reason"),
    [
        ("unknown", "no key for this kid"),
        ("../../../../etc/passwd", "no key for this kid"),
        ("..\\..\\..\\windows\\win.ini", "no key for this kid"),
        ("/dev/null", "no key for this kid"),
        ("file:///etc/passwd", "no key for this kid"),
        ("' OR '1'='1' --", "no key for this kid"),
        ("ec1'; DROP TABLE soc2kit_audit_events; --", "no key for this kid"),
        ('ec1" OR kid LIKE "%', "no key for this kid"),
        ("EC1", "no key for this kid"),
        ("ec\uff11", "no key for this kid"),  # fullwidth digit one
        ("k" * 257, "malformed kid"),
        ("k" * 4000, "malformed kid"),
        ("ec1\x00", "malformed kid"),
        ("ec1\n", "malformed kid"),
        ("", "malformed kid"),
        (42, "malformed kid"),
        (["ec1"], "malformed kid"),
        ({"$ne": None}, "malformed kid"),
    ],
    ids=lambda v: repr(v)[:40] if not isinstance(v, str) or len(v) < 40 else f"{len(v)}-chars",
)
def test_hostile_kids(app: Served, kid: object, reason: str) -> None:
    refused_token(app, es({"alg": "ES256", "kid": kid}), reason)
    # The SQL-ish kids were data, never SQL: the audit table is still there.
    assert audit_events(app[1])


# headers that carry or point at keys: not one outbound request --------------------------


@dataclass(frozen=True)
class KeyHeaderCase:
    header: Callable[[str], dict[str, Any]]
    """The token's header, given the attacker server's base URL."""
    key: ECKey


KEY_HEADER_CASES = {
    "jku": KeyHeaderCase(
        lambda base: {"alg": "ES256", "kid": "attacker", "jku": f"{base}/jwks.json"}, ATTACKER
    ),
    "x5u": KeyHeaderCase(
        lambda base: {"alg": "ES256", "kid": "attacker", "x5u": f"{base}/cert.pem"}, ATTACKER
    ),
    "jwk": KeyHeaderCase(
        lambda base: {"alg": "ES256", "jwk": ATTACKER.as_dict(private=False)}, ATTACKER
    ),
    "x5c": KeyHeaderCase(
        lambda base: {
            "alg": "ES256",
            "x5c": [base64.b64encode(CERT.public_bytes(serialization.Encoding.DER)).decode()],
        },
        ATTACKER,
    ),
    "jku-under-our-kid": KeyHeaderCase(
        lambda base: {"alg": "ES256", "kid": "ec1", "jku": f"{base}/jwks.json"}, ROGUE
    ),
    "jku-on-a-genuine-token": KeyHeaderCase(
        # Signed by the trusted key: the header alone is reason enough.
        lambda base: {"alg": "ES256", "kid": "ec1", "jku": f"{base}/jwks.json"},
        EC,
    ),
    "x5u-with-unknown-kid": KeyHeaderCase(
        lambda base: {"alg": "ES256", "kid": "fresh", "x5u": f"{base}/cert.pem"}, ATTACKER
    ),
}


def arm(attacker: Attacker) -> None:
    """What the attacker serves: a fetch would hand over a key that verifies the token."""
    attacker.server.json("/jwks.json", public_jwks(ATTACKER))
    attacker.server.raw(
        "/cert.pem",
        200,
        {"Content-Type": "application/x-pem-file"},
        CERT.public_bytes(serialization.Encoding.PEM),
    )


@pytest.mark.parametrize("case", list(KEY_HEADER_CASES))
def test_key_carrying_headers_fetch_nothing(app: Served, attacker: Attacker, case: str) -> None:
    arm(attacker)
    spec = KEY_HEADER_CASES[case]
    token = es(spec.header(attacker.base), key=spec.key)
    refused_token(app, token, "key-carrying header refused")
    assert attacker.contacts == 0, attacker


def test_key_carrying_headers_fetch_nothing_with_remote_keys(
    tmp_path: Path, attacker: Attacker, idp: JwksServer
) -> None:
    # Keys from the identity provider's URL: only that URL is ever fetched.
    arm(attacker)
    idp.json("/jwks", public_jwks(EC))
    settings = settings_for(tmp_path, oidc_issuer=ISS, oidc_audience=AUD, jwks_url=idp.url("/jwks"))
    with serving(settings, routes) as served:
        served[1].tokens._clock = FakeClock(NOW)
        accepted(served, sign(EC))
        CALLS.clear()
        for spec in KEY_HEADER_CASES.values():
            refused_token(served, es(spec.header(attacker.base), key=spec.key), "key-carrying")
        refused_token(served, es({"alg": "ES256", "kid": "../jwks"}), "no key for this kid")
    assert attacker.contacts == 0, attacker
    assert dict(idp.hits) == {"/jwks": 1}


# crit -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["exp2"], "exp2": NOW + 60},
        {"crit": ["b64"], "b64": False},
        {"crit": ["http://example.test/unknown"]},
        {"crit": []},
        {"crit": "exp"},
    ],
    ids=lambda e: json.dumps(e["crit"]),
)
def test_unknown_crit(app: Served, extra: dict[str, Any]) -> None:
    refused_token(app, es({"alg": "ES256", "kid": "ec1", **extra}), "unsupported critical header")


# time, audience, issuer, subject ----------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param({"exp": NOW - 3600}, "claims rejected", id="expired"),
        pytest.param({"exp": NOW - LEEWAY}, "claims rejected", id="expired-at-leeway"),
        pytest.param({"exp": None}, "claims rejected", id="no-exp"),
        pytest.param({"exp": "never"}, "claims rejected", id="exp-not-a-number"),
        pytest.param({"nbf": NOW + LEEWAY + 1}, "claims rejected", id="nbf-beyond-leeway"),
        pytest.param({"nbf": NOW + 86400}, "claims rejected", id="not-yet-valid"),
        pytest.param({"iat": NOW + LEEWAY + 1}, "claims rejected", id="iat-beyond-leeway"),
        pytest.param({"iat": NOW + 86400 * 365}, "claims rejected", id="iat-far-future"),
        pytest.param({"iat": "1800000000"}, "claims rejected", id="iat-a-string"),
        pytest.param({"aud": "api://other"}, "claims rejected", id="wrong-aud"),
        pytest.param({"aud": ["api://other"]}, "claims rejected", id="wrong-aud-list"),
        pytest.param({"aud": None}, "claims rejected", id="no-aud"),
        pytest.param({"aud": ""}, "claims rejected", id="empty-aud"),
        pytest.param({"aud": AUD.upper()}, "claims rejected", id="aud-other-case"),
        pytest.param({"iss": "https://evil.example/"}, "claims rejected", id="wrong-iss"),
        pytest.param({"iss": None}, "claims rejected", id="no-iss"),
        pytest.param({"iss": ISS.rstrip("/")}, "claims rejected", id="iss-without-slash"),
        pytest.param({"iss": ISS + "evil/"}, "claims rejected", id="iss-prefix"),
        pytest.param({"sub": None}, "claims rejected", id="no-sub"),
        pytest.param({"sub": ""}, "claims rejected", id="empty-sub"),
        pytest.param({"sub": 42}, "claims rejected", id="sub-a-number"),
        pytest.param({"sub": ["alice"]}, "claims rejected", id="sub-a-list"),
    ],
)
def test_bad_claims(app: Served, overrides: dict[str, Any], reason: str) -> None:
    body = {**claims(), **overrides}
    body = {k: v for k, v in body.items() if v is not None}
    refused_token(app, es({"alg": "ES256", "kid": "ec1"}, body), reason)


# typ: ID and refresh tokens are not access tokens -----------------------------------------


ID_TOKEN_CLAIMS = {"nonce": "n-0S6_WzA2Mj", "auth_time": NOW - 10, "azp": "spa"}


@pytest.mark.parametrize(
    ("header", "extra"),
    [
        pytest.param({"typ": "JWT"}, ID_TOKEN_CLAIMS, id="id-token"),
        pytest.param({"typ": "id_token+jwt"}, ID_TOKEN_CLAIMS, id="id-token-typed"),
        pytest.param({"typ": "JWT"}, {"typ": "Refresh"}, id="refresh-token"),
        pytest.param({"typ": "refresh+jwt"}, {}, id="refresh-token-typed"),
        pytest.param({}, {"typ": "at+jwt"}, id="typ-only-in-the-claims"),
        pytest.param({}, {}, id="no-typ"),
        pytest.param({"typ": "at+jwt-evil"}, {}, id="typ-suffix"),
        pytest.param({"typ": 7}, {}, id="typ-a-number"),
    ],
)
def test_token_type_is_required(
    typ_app: Served, header: dict[str, Any], extra: dict[str, Any]
) -> None:
    token = es({"alg": "ES256", "kid": "ec1", **header}, {**claims(), **extra})
    refused_token(typ_app, token, "token type not accepted")


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_access_token_type_is_the_control(typ_app: Served, typ: str) -> None:
    accepted(typ_app, es({"alg": "ES256", "kid": "ec1", "typ": typ}))


# signatures -------------------------------------------------------------------------------


def other_token() -> str:
    return sign(EC, sub="mallory")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(
            lambda: mangle(sign(EC), 2, lambda s: ""), "malformed base64url", id="stripped"
        ),
        pytest.param(lambda: sign(EC).rsplit(".", 1)[0], "not a compact JWS", id="two-segments"),
        pytest.param(lambda: sign(EC) + ".AAAA", "not a compact JWS", id="four-segments"),
        pytest.param(
            lambda: mangle(sign(EC), 2, lambda s: s[:-10]),
            "signature or format invalid",
            id="truncated",
        ),
        pytest.param(
            lambda: mangle(sign(EC), 2, lambda s: s[:-1]), "malformed base64url", id="cut-by-one"
        ),
        pytest.param(
            lambda: mangle(sign(EC), 2, flip_bit), "signature or format invalid", id="es256-bitflip"
        ),
        pytest.param(
            lambda: mangle(sign(RSA, "RS256"), 2, flip_bit),
            "signature or format invalid",
            id="rs256-bitflip",
        ),
        pytest.param(
            lambda: mangle(sign(EC), 1, lambda _: b64json(claims(sub="root", roles=["admin"]))),
            "signature or format invalid",
            id="payload-swapped",
        ),
        pytest.param(
            lambda: mangle(sign(EC), 0, lambda _: b64json({"alg": "ES256", "kid": "ec1", "x": 1})),
            "signature or format invalid",
            id="header-swapped",
        ),
        pytest.param(
            lambda: mangle(sign(EC), 2, lambda _: other_token().split(".")[2]),
            "signature or format invalid",
            id="signature-of-another-token",
        ),
        pytest.param(
            lambda: raw_sign({"alg": "ES256", "kid": "ec1"}, claims(), lambda _: bytes(64)),
            "signature or format invalid",
            id="es256-r-s-zero",
        ),
        pytest.param(
            lambda: raw_sign(
                {"alg": "ES256", "kid": "ec1"},
                claims(),
                lambda _: P256_ORDER.to_bytes(32, "big") * 2,
            ),
            "signature or format invalid",
            id="es256-r-s-order",
        ),
        pytest.param(
            lambda: raw_sign(
                {"alg": "ES256", "kid": "ec1"}, claims(), lambda _: bytes(63) + b"\x01"
            ),
            "signature or format invalid",
            id="es256-r-zero-s-one",
        ),
        pytest.param(
            lambda: raw_sign(
                {"alg": "ES256", "kid": "ec1"},
                claims(),
                lambda _: b"\x30\x06\x02\x01\x00\x02\x01\x00",
            ),
            "signature or format invalid",
            id="es256-der-encoded",
        ),
        pytest.param(
            lambda: raw_sign(
                {"alg": "ES256", "kid": "ec1"}, claims(), lambda d: es256(EC)(d) + b"\x00"
            ),
            "signature or format invalid",
            id="es256-65-bytes",
        ),
        pytest.param(
            lambda: raw_sign({"alg": "ES256", "kid": "ec1"}, claims(), rsa(hashes.SHA256())),
            "signature or format invalid",
            id="es256-header-rsa-signature",
        ),
        pytest.param(
            lambda: raw_sign({"alg": "RS256", "kid": "rsa1"}, claims(), lambda _: bytes(256)),
            "signature or format invalid",
            id="rs256-zero-signature",
        ),
    ],
)
def test_broken_signatures(app: Served, token: Callable[[], str], reason: str) -> None:
    refused_token(app, token(), reason)


# size and encoding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: sign(EC, padding="A" * 9000), id="signed-but-oversized"),
        pytest.param(lambda: "x" * 9000, id="junk"),
        pytest.param(lambda: sign(EC, padding="A" * 60000), id="60kb"),
    ],
)
def test_oversized_tokens(app: Served, token: Callable[[], str]) -> None:
    refused_token(app, token(), "token too large")


@pytest.mark.parametrize("segment", [0, 1, 2], ids=["header", "payload", "signature"])
@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda s: s[:5] + "+" + s[6:], id="plus"),
        pytest.param(lambda s: s[:5] + "/" + s[6:], id="slash"),
        pytest.param(lambda s: s + "=" * (-len(s) % 4 or 4), id="padding"),
        pytest.param(lambda s: s[:5] + "!" + s[6:], id="bang"),
        pytest.param(lambda s: s[:5] + "\xe9" + s[6:], id="latin1"),
        pytest.param(lambda s: s + "A" * ((1 - len(s)) % 4), id="length-4n+1"),
    ],
)
def test_bad_base64url(app: Served, segment: int, damage: Callable[[str], str]) -> None:
    refused_token(app, mangle(sign(EC), segment, damage), "malformed base64url segment")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(
            lambda: mangle(sign(EC), 0, lambda _: b64(b'{"alg":"ES256","kid":"ec1","alg":"none"}')),
            "malformed header",
            id="duplicate-alg",
        ),
        pytest.param(
            lambda: mangle(sign(EC), 0, lambda _: b64(b'{"alg":"ES256","kid":"rsa1","kid":"ec1"}')),
            "malformed header",
            id="duplicate-kid",
        ),
        pytest.param(
            lambda: signed_text(
                {"alg": "ES256", "kid": "ec1"}, json.dumps(claims())[:-1] + ', "sub": "root"}'
            ),
            "signature or format invalid",
            id="duplicate-sub-signed",
        ),
        pytest.param(
            lambda: signed_text(
                {"alg": "ES256", "kid": "ec1"},
                json.dumps(claims())[:-1] + ', "roles": ["admin"]}',
            ),
            "signature or format invalid",
            id="duplicate-roles-signed",
        ),
        pytest.param(
            lambda: mangle(sign(EC), 0, lambda _: b64(b"not json")), "malformed header", id="junk"
        ),
        pytest.param(
            lambda: mangle(sign(EC), 0, lambda _: b64(b'["ES256"]')),
            "malformed header",
            id="header-a-list",
        ),
        pytest.param(
            lambda: signed_text({"alg": "ES256", "kid": "ec1"}, "not json"),
            "signature or format invalid",
            id="payload-junk-signed",
        ),
        pytest.param(
            lambda: signed_text({"alg": "ES256", "kid": "ec1"}, '["alice"]'),
            "signature or format invalid",
            id="payload-a-list-signed",
        ),
    ],
)
def test_bad_json(app: Served, token: Callable[[], str], reason: str) -> None:
    refused_token(app, token(), reason)


# where the credential is (and is not) read from --------------------------------------------


@pytest.mark.parametrize(
    "place", ["access_token", "token", "id_token", "jwt", "Authorization", "bearer"]
)
def test_a_token_in_the_query_string_is_ignored(app: Served, place: str) -> None:
    token = sign(EC)
    refused(
        app,
        {},
        "no credentials",
        error="unauthorized",
        secrets=(token,),
        path=f"/secret?{place}={token}",
    )


def test_a_token_in_a_cookie_is_ignored(app: Served) -> None:
    token = sign(EC)
    cookie = {"Cookie": f"access_token={token}; Authorization=Bearer%20{token}"}
    refused(app, cookie, "no credentials", error="unauthorized", secrets=(token,))


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        pytest.param(("good", "good"), "multiple Authorization headers", id="same-twice"),
        pytest.param(("good", "other"), "multiple Authorization headers", id="two-valid"),
        pytest.param(("good", "junk"), "multiple Authorization headers", id="valid-then-junk"),
        pytest.param(("junk", "good"), "multiple Authorization headers", id="junk-then-valid"),
    ],
)
def test_two_authorization_headers(app: Served, values: tuple[str, str], reason: str) -> None:
    tokens = {"good": sign(EC), "other": sign(RSA, "RS256", sub="bob"), "junk": "a.b.c"}
    headers = [("Authorization", f"Bearer {tokens[v]}") for v in values]
    refused(app, headers, reason, secrets=(tokens["good"], tokens["other"]))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        pytest.param(lambda t: {"Authorization": f"Bearer {t}, Bearer {t}"}, "not a bearer"),
        pytest.param(lambda t: {"Authorization": f"Basic {t}"}, "not a bearer"),
        pytest.param(lambda t: {"Authorization": f"Token {t}"}, "not a bearer"),
        pytest.param(lambda t: {"Authorization": t}, "not a bearer"),
        pytest.param(lambda t: {"Authorization": f"Bearer {t} {t}"}, "not a bearer"),
        pytest.param(
            lambda t: {"Authorization": f"Bearer {t}", "X-API-Key": "s2k_" + "0" * 24 + "_x"},
            "both Authorization and X-API-Key",
        ),
        pytest.param(lambda t: {"X-API-Key": t}, "malformed API key"),
    ],
    ids=[
        "comma-joined",
        "basic",
        "token-scheme",
        "no-scheme",
        "two-tokens",
        "plus-api-key",
        "jwt-as-api-key",
    ],
)
def test_malformed_authorization(
    app: Served, header: Callable[[str], dict[str, str]], reason: str
) -> None:
    token = sign(EC)
    refused(app, header(token), reason, secrets=(token,))


def test_the_public_route_ignores_bad_tokens(app: Served) -> None:
    # A public route does not authenticate: a forged token neither opens nor breaks it.
    client, kit = app
    token = es({"alg": "none"})
    response = client.get("/open", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and CALLS == {"open": 1}
    expect_audit(kit, response.headers["x-request-id"], 200)
    expect_no_token_material(kit, token)
