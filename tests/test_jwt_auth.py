"""Tests for settings_api.jwt_auth (docs/settings-api.md: pinned algorithms, exp, aud/iss,
tenants)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import JWT_SECRET
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from net import closed_url

from settings_api.jwt_auth import JwtVerifier, Principal, TokenError, issue_token

SECRET = "test-secret-" + "s" * 64  # long enough for HS512 too: no pyjwt key warnings
OTHER_SECRET = "other-secret-" + "o" * 64
AUD = "mcpgw"  # the audience every JWKS verifier needs
RSA_KID = "rsa-1"
EC_KID = "ec-1"

ServerFactory = Callable[..., Awaitable[TestServer]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "alice", "tenants": ["acme"], "iat": now, "exp": now + 600}
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def _hs(claims: dict[str, Any], *, secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def _hand_signed_hs256(claims: dict[str, Any], key: bytes, header: dict[str, Any]) -> str:
    """Forge an HMAC token by hand: pyjwt (rightly) refuses PEM keys as HMAC secrets."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


async def _token_error(verifier: JwtVerifier, token: str) -> TokenError:
    with pytest.raises(TokenError) as info:
        await verifier.verify(token)
    return info.value


# --- keys and JWKS server -------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_public_pem(rsa_key: rsa.RSAPrivateKey) -> bytes:
    return rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def jwks_doc(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    rsa_jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    rsa_jwk.update(kid=RSA_KID, alg="RS256", use="sig")
    ec_jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    ec_jwk.update(kid=EC_KID, alg="ES256", use="sig")
    return {"keys": [rsa_jwk, ec_jwk]}


@dataclass
class JwksServer:
    url: str
    hits: list[float] = field(default_factory=list)


@pytest.fixture
async def jwks_server(aiohttp_server: ServerFactory, jwks_doc: dict[str, Any]) -> JwksServer:
    hits: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        return web.json_response(jwks_doc)

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    return JwksServer(url=str(server.make_url("/.well-known/jwks.json")), hits=hits)


def _rs256(rsa_key: rsa.RSAPrivateKey, claims: dict[str, Any], kid: str = RSA_KID) -> str:
    return jwt.encode({"aud": AUD, **claims}, rsa_key, algorithm="RS256", headers={"kid": kid})


def _es256(ec_key: ec.EllipticCurvePrivateKey, claims: dict[str, Any], kid: str = EC_KID) -> str:
    return jwt.encode({"aud": AUD, **claims}, ec_key, algorithm="ES256", headers={"kid": kid})


# --- HS256 ------------------------------------------------------------------------------


async def test_issue_token_round_trip() -> None:
    token = issue_token(SECRET, "acme", ttl_s=120)
    principal = await JwtVerifier(secret=SECRET).verify(token)
    assert principal == Principal(subject="cli:acme", tenants=frozenset({"acme"}))
    assert principal.can_access("acme")
    assert not principal.can_access("globex")

    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["tenants"] == ["acme"]
    assert claims["exp"] - claims["iat"] == 120
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


async def test_issue_token_options_and_wildcard() -> None:
    token = issue_token(SECRET, "*", subject="ops", audience="mcpgw", issuer="https://idp")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="mcpgw")
    assert claims["sub"] == "ops"
    assert claims["tenants"] == ["*"]
    assert claims["iss"] == "https://idp"

    verifier = JwtVerifier(secret=SECRET, audience="mcpgw", issuer="https://idp")
    principal = await verifier.verify(token)
    assert principal.tenants is None
    assert principal.can_access("anything")


@pytest.mark.parametrize("kwargs", [{"ttl_s": 0}, {"ttl_s": -5}])
def test_issue_token_rejects_bad_ttl(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        issue_token(SECRET, "acme", **kwargs)


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"tenants": ["acme", "globex"]}, frozenset({"acme", "globex"})),
        ({"tenants": None, "tenant": "acme"}, frozenset({"acme"})),
        ({"tenants": ["acme", "*"]}, None),
        ({"tenants": None, "tenant": "*"}, None),
        ({"tenants": ["acme"], "tenant": "globex"}, frozenset({"acme", "globex"})),
    ],
)
async def test_tenant_claim_forms(claims: dict[str, Any], expected: frozenset[str] | None) -> None:
    principal = await JwtVerifier(secret=SECRET).verify(_hs(_claims(**claims)))
    assert principal.tenants == expected
    assert principal.subject == "alice"


@pytest.mark.parametrize(
    "claims",
    [
        {"tenants": None},
        {"tenants": []},
        {"tenants": "acme"},
        {"tenants": ["acme", 7]},
        {"tenants": [""]},
        {"tenants": None, "tenant": ["acme"]},
        {"tenants": None, "tenant": ""},
        {"tenants": None, "tenant": 42},
    ],
)
async def test_tenant_claim_missing_or_wrong_type(claims: dict[str, Any]) -> None:
    err = await _token_error(JwtVerifier(secret=SECRET), _hs(_claims(**claims)))
    assert str(err) == "token grants no tenant"


async def test_missing_sub_is_unknown() -> None:
    principal = await JwtVerifier(secret=SECRET).verify(_hs(_claims(sub=None)))
    assert principal.subject == "unknown"


async def test_non_string_sub_rejected() -> None:
    err = await _token_error(JwtVerifier(secret=SECRET), _hs(_claims(sub=123)))
    assert "123" not in str(err)


def test_principal_can_access() -> None:
    assert Principal("x", None).can_access("acme")
    assert Principal("x", frozenset({"acme"})).can_access("acme")
    assert not Principal("x", frozenset({"acme"})).can_access("globex")
    assert not Principal("x", frozenset()).can_access("acme")


async def test_expired() -> None:
    now = int(time.time())
    token = _hs(_claims(iat=now - 3600, exp=now - 120))
    err = await _token_error(JwtVerifier(secret=SECRET), token)
    assert str(err) == "token expired"


async def test_leeway_tolerates_small_clock_skew() -> None:
    token = _hs(_claims(exp=int(time.time()) - 5))
    await JwtVerifier(secret=SECRET).verify(token)
    err = await _token_error(JwtVerifier(secret=SECRET, leeway_s=0), token)
    assert str(err) == "token expired"


async def test_not_yet_valid() -> None:
    token = _hs(_claims(nbf=int(time.time()) + 3600))
    err = await _token_error(JwtVerifier(secret=SECRET), token)
    assert str(err) == "token not yet valid"


async def test_missing_exp() -> None:
    err = await _token_error(JwtVerifier(secret=SECRET), _hs(_claims(exp=None)))
    assert str(err) == "missing exp claim"


async def test_wrong_secret() -> None:
    err = await _token_error(JwtVerifier(secret=SECRET), _hs(_claims(), secret=OTHER_SECRET))
    assert str(err) == "invalid signature"


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
async def test_other_hmac_algorithms_rejected(alg: str) -> None:
    err = await _token_error(JwtVerifier(secret=SECRET), _hs(_claims(), alg=alg))
    assert str(err) == "unsupported algorithm"


def _alg_none_tokens() -> list[str]:
    payload = _b64(json.dumps(_claims()).encode())
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    by_hand = f"{none_header}.{payload}."
    return [
        by_hand,
        jwt.encode(_claims(), None, algorithm="none"),
        # A (meaningless) signature segment, and odd capitalisation of "none".
        by_hand + _b64(b"sig"),
        f"{_b64(json.dumps({'alg': 'None'}).encode())}.{payload}.",
    ]


@pytest.mark.parametrize("token", _alg_none_tokens())
async def test_alg_none_rejected(token: str, jwks_server: JwksServer) -> None:
    for verifier in (
        JwtVerifier(secret=SECRET),
        JwtVerifier(secret=None, jwks_url=jwks_server.url, audience=AUD),
        JwtVerifier(secret=SECRET, jwks_url=jwks_server.url, audience=AUD),
    ):
        err = await _token_error(verifier, token)
        assert str(err) == "unsupported algorithm"


async def test_asymmetric_token_rejected_without_jwks(rsa_key: rsa.RSAPrivateKey) -> None:
    err = await _token_error(JwtVerifier(secret=SECRET), _rs256(rsa_key, _claims()))
    assert str(err) == "unsupported algorithm"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["9999999999", "0", "soon", True, [1]])
async def test_date_claims_must_be_numbers(claim: str, value: object) -> None:
    # pyjwt converts them with int(), which takes "9999999999" (a never-expiring token) and
    # true; RFC 7519 says a NumericDate is a JSON number.
    err = await _token_error(JwtVerifier(secret=SECRET), _hs(_claims(**{claim: value})))
    assert str(err) != "" and "9999999999" not in str(err)


@pytest.mark.parametrize(("claim", "value"), [("exp", "9999999999"), ("nbf", "0"), ("iat", "0")])
async def test_the_settings_api_refuses_a_token_with_a_string_date(
    client: TestClient, claim: str, value: str
) -> None:
    # Each of these passed pyjwt's int(): a token that never expires, valid since 1970.
    token = _hs(_claims(**{claim: value}), secret=JWT_SECRET)
    headers = {"Authorization": f"Bearer {token}"}
    async with client.get("/v1/tenants/acme/integrations", headers=headers) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        assert (await resp.json())["detail"] == f"invalid {claim} claim"


async def test_fractional_date_claims_are_fine() -> None:
    now = time.time()
    claims = _claims(iat=now - 0.5, nbf=now - 0.5, exp=now + 600.5)
    assert (await JwtVerifier(secret=SECRET).verify(_hs(claims))).subject == "alice"
    # Past a float's range is still a number (and still no server error).
    assert (await JwtVerifier(secret=SECRET).verify(_hs(_claims(exp=10**400)))).subject


@pytest.mark.parametrize("token", ["\udcff", "é.é.é", "eyJhbGciOiJIUzI1NiJ9.\udcff.x"])
async def test_non_ascii_tokens_are_malformed(token: str) -> None:
    # Raw non-UTF-8 header bytes reach us as surrogates, which pyjwt cannot even encode.
    assert str(await _token_error(JwtVerifier(secret=SECRET), token)) == "malformed token"


# --- audience / issuer ----------------------------------------------------------------


async def test_audience_match_and_mismatch() -> None:
    verifier = JwtVerifier(secret=SECRET, audience="mcpgw")
    await verifier.verify(_hs(_claims(aud="mcpgw")))
    await verifier.verify(_hs(_claims(aud=["other", "mcpgw"])))
    assert str(await _token_error(verifier, _hs(_claims(aud="other")))) == "invalid audience"
    assert str(await _token_error(verifier, _hs(_claims()))) == "missing aud claim"


async def test_audience_in_token_ignored_when_not_configured() -> None:
    principal = await JwtVerifier(secret=SECRET).verify(_hs(_claims(aud="whatever")))
    assert principal.tenants == frozenset({"acme"})


async def test_issuer_match_and_mismatch() -> None:
    verifier = JwtVerifier(secret=SECRET, issuer="https://idp.example")
    await verifier.verify(_hs(_claims(iss="https://idp.example")))
    err = await _token_error(verifier, _hs(_claims(iss="https://evil.example")))
    assert str(err) == "invalid issuer"
    assert str(await _token_error(verifier, _hs(_claims()))) == "missing iss claim"
    # Not configured: any iss is accepted.
    await JwtVerifier(secret=SECRET).verify(_hs(_claims(iss="https://evil.example")))


# --- JWKS -----------------------------------------------------------------------------
# The JWKS server runs on the test's own event loop, so every JWKS success below also
# proves the blocking PyJWKClient fetch happens off the loop (otherwise it would deadlock).


async def test_jwks_rs256(jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(secret=None, jwks_url=jwks_server.url, audience="mcpgw")
    principal = await verifier.verify(_rs256(rsa_key, _claims(aud="mcpgw", sub="idp|42")))
    assert principal == Principal(subject="idp|42", tenants=frozenset({"acme"}))
    # The JWK set is cached: a second verification does not refetch it.
    await verifier.verify(_rs256(rsa_key, _claims(aud="mcpgw")))
    assert len(jwks_server.hits) == 1


async def test_jwks_es256(jwks_server: JwksServer, ec_key: ec.EllipticCurvePrivateKey) -> None:
    verifier = JwtVerifier(secret=None, jwks_url=jwks_server.url, audience=AUD)
    principal = await verifier.verify(_es256(ec_key, _claims(tenant="*", tenants=None)))
    assert principal.tenants is None


async def test_jwks_and_secret_both_configured(
    jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = JwtVerifier(secret=SECRET, jwks_url=jwks_server.url, audience=AUD)
    await verifier.verify(_rs256(rsa_key, _claims()))
    await verifier.verify(_hs(_claims(aud=AUD)))
    err = await _token_error(verifier, _hs(_claims(aud=AUD), alg="HS512"))
    assert str(err) == "unsupported algorithm"


async def test_jwks_hs256_rejected_when_only_jwks(jwks_server: JwksServer) -> None:
    verifier = JwtVerifier(secret=None, jwks_url=jwks_server.url, audience=AUD)
    err = await _token_error(verifier, _hs(_claims()))
    assert str(err) == "unsupported algorithm"


async def test_algorithm_confusion_rejected(jwks_server: JwksServer, rsa_public_pem: bytes) -> None:
    claims = _claims()
    forged = _hand_signed_hs256(claims, rsa_public_pem, {"alg": "HS256", "kid": RSA_KID})
    only_jwks = JwtVerifier(secret=None, jwks_url=jwks_server.url, audience=AUD)
    assert str(await _token_error(only_jwks, forged)) == "unsupported algorithm"
    both = JwtVerifier(secret=SECRET, jwks_url=jwks_server.url, audience=AUD)
    assert str(await _token_error(both, forged)) == "invalid signature"
    # Header lies about the algorithm, signature is still HMAC-with-public-key.
    relabelled = _hand_signed_hs256(claims, rsa_public_pem, {"alg": "RS256", "kid": RSA_KID})
    assert str(await _token_error(both, relabelled)) == "invalid signature"


async def test_jwks_alg_must_match_key(
    jwks_server: JwksServer, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    # An EC signature presented under the RSA key's kid.
    verifier = JwtVerifier(secret=None, jwks_url=jwks_server.url, audience=AUD)
    err = await _token_error(verifier, _es256(ec_key, _claims(), kid=RSA_KID))
    assert str(err) == "unsupported algorithm"


async def test_jwks_signature_from_other_key(jwks_server: JwksServer) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = JwtVerifier(secret=None, jwks_url=jwks_server.url, audience=AUD)
    err = await _token_error(verifier, _rs256(impostor, _claims()))
    assert str(err) == "invalid signature"


async def test_jwks_expired(jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    verifier = JwtVerifier(secret=None, jwks_url=jwks_server.url, audience=AUD)
    err = await _token_error(verifier, _rs256(rsa_key, _claims(iat=now - 900, exp=now - 600)))
    assert str(err) == "token expired"


@pytest.mark.parametrize("kid", ["no-such-kid", None])
async def test_jwks_unknown_kid(
    jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey, kid: str | None
) -> None:
    verifier = JwtVerifier(secret=None, jwks_url=jwks_server.url, audience=AUD)
    headers = {"kid": kid} if kid else None
    token = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers=headers)
    err = await _token_error(verifier, token)
    assert str(err) == "signing key not found"


async def test_jwks_server_down_fails_fast(rsa_key: rsa.RSAPrivateKey) -> None:
    url = closed_url("/jwks.json")
    # A timeout far above the bound: the answer must come from the refused connection, not
    # from the timeout firing, with room to spare on a busy machine.
    verifier = JwtVerifier(secret=None, jwks_url=url, jwks_timeout_s=30.0, audience=AUD)
    start = time.monotonic()
    err = await _token_error(verifier, _rs256(rsa_key, _claims()))
    assert str(err) == "JWKS unavailable"
    assert time.monotonic() - start < 2.0


async def test_jwks_server_hangs_is_bounded(
    aiohttp_server: ServerFactory, rsa_key: rsa.RSAPrivateKey
) -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        # Bounded so server teardown never waits long on this handler.
        await asyncio.wait_for(release.wait(), timeout=5)
        return web.json_response({"keys": []})

    app = web.Application()
    app.router.add_get("/jwks.json", stall)
    server = await aiohttp_server(app, host="127.0.0.1")
    verifier = JwtVerifier(
        secret=None,
        jwks_url=str(server.make_url("/jwks.json")),
        jwks_timeout_s=0.3,
        audience=AUD,
    )
    start = time.monotonic()
    try:
        err = await _token_error(verifier, _rs256(rsa_key, _claims()))
    finally:
        release.set()
    assert str(err) == "JWKS unavailable"
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, "not json"), (200, "[1, 2]"), (200, '{"keys": []}'), (500, "oops")],
)
async def test_jwks_bad_document(
    aiohttp_server: ServerFactory, rsa_key: rsa.RSAPrivateKey, status: int, body: str
) -> None:
    async def bad(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/jwks.json", bad)
    server = await aiohttp_server(app, host="127.0.0.1")
    verifier = JwtVerifier(secret=None, jwks_url=str(server.make_url("/jwks.json")), audience=AUD)
    err = await _token_error(verifier, _rs256(rsa_key, _claims()))
    assert str(err) in {"JWKS unavailable", "signing key not found"}


def test_a_jwks_verifier_needs_an_audience(jwks_server: JwksServer) -> None:
    with pytest.raises(ValueError, match="audience"):
        JwtVerifier(secret=None, jwks_url=jwks_server.url)
    with pytest.raises(ValueError, match="audience"):
        JwtVerifier(secret=SECRET, jwks_url=jwks_server.url, audience="")


async def test_a_token_for_another_application_is_refused(
    jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = JwtVerifier(secret=None, jwks_url=jwks_server.url, audience=AUD)
    token = _rs256(rsa_key, _claims(aud="some-other-app", tenants=["*"]))
    assert str(await _token_error(verifier, token)) == "invalid audience"


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        JwtVerifier(secret=None)
    with pytest.raises(ValueError):
        JwtVerifier(secret="")
    with pytest.raises(ValueError):
        JwtVerifier(secret=None, jwks_url="file:///etc/passwd", audience=AUD)


# --- malformed input and message safety ----------------------------------------------

GARBAGE = [
    "",
    "garbage",
    "a.b",
    "a.b.c",
    "....",
    "ü.ü.ü",
    "eyJhbGciOiJIUzI1NiJ9",
    f"{_b64(b'[1,2]')}.{_b64(b'{}')}.sig",
    f"{_b64(b'not json')}.{_b64(b'{}')}.sig",
    f"{_b64(json.dumps({'alg': 'HS256', 'kid': 5}).encode())}.{_b64(b'{}')}.sig",
    "Bearer " + "x" * 40,
    "x" * 100_000,
]


@pytest.mark.parametrize("token", GARBAGE, ids=range(len(GARBAGE)))
async def test_malformed_tokens(token: str) -> None:
    err = await _token_error(JwtVerifier(secret=SECRET), token)
    assert str(err) in {"malformed token", "missing bearer token", "unsupported algorithm"}


async def test_hs256_with_garbage_payload() -> None:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(b'not json')}"
    sig = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    err = await _token_error(JwtVerifier(secret=SECRET), f"{signing_input}.{_b64(sig)}")
    assert str(err) == "malformed token"


async def test_token_never_in_error_message_or_logs(
    jwks_server: JwksServer,
    rsa_key: rsa.RSAPrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = int(time.time())
    down = JwtVerifier(secret=None, jwks_url=closed_url("/j"), audience=AUD)
    cases: list[tuple[JwtVerifier, str]] = [
        (JwtVerifier(secret=SECRET), _hs(_claims(exp=now - 600))),
        (JwtVerifier(secret=SECRET), _hs(_claims(), secret=OTHER_SECRET)),
        (JwtVerifier(secret=SECRET), _hs(_claims(exp=None))),
        (JwtVerifier(secret=SECRET), _hs(_claims(tenants=None))),
        (JwtVerifier(secret=SECRET, audience="a"), _hs(_claims(aud="b"))),
        (JwtVerifier(secret=SECRET), _alg_none_tokens()[0]),
        (JwtVerifier(secret=SECRET), "garbage.garbage.garbage"),
        (
            JwtVerifier(secret=None, jwks_url=jwks_server.url, audience=AUD),
            _rs256(rsa_key, _claims(), "zz"),
        ),
        (down, _rs256(rsa_key, _claims())),
    ]
    caplog.set_level(logging.DEBUG)
    for verifier, token in cases:
        err = await _token_error(verifier, token)
        text = f"{err} {err!r} {err.args}"
        for part in (token, *token.split(".")):
            if len(part) >= 8:
                assert part not in text
                assert part not in caplog.text
        # Chained pyjwt exceptions are suppressed so tracebacks cannot leak details.
        assert err.__cause__ is None
        assert err.__context__ is None or err.__suppress_context__
