"""TokenVerifier: accepted tokens, every refusal reason, and configuration errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from pydantic import SecretStr

from registry.auth import (
    AuthConfigurationError,
    TokenIssuer,
    TokenVerifier,
    UserContext,
)
from registry.auth.jwt import _reason
from registry.config import Settings
from registry.errors import AuthenticationError
from tests.unit.auth._material import (
    ALICE_ID,
    AUDIENCE,
    HS_SECRET,
    ISSUER,
    KeyPair,
    b64url,
    unsigned_token,
)

ALICE = UserContext(user_id=ALICE_ID, username="alice", scopes=("read:servers",))
HOUR = timedelta(hours=1)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": ALICE_ID, "iat": now, "exp": now + 3600}
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def _hs_token(**overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), HS_SECRET, algorithm="HS256")


def _hs_verifier(**values: Any) -> TokenVerifier:
    return TokenVerifier.from_settings(Settings(jwt_secret=HS_SECRET, **values))


def _refused(verifier: TokenVerifier, token: str, reason: str, **kwargs: Any) -> None:
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(token, **kwargs)
    assert caught.value.message == reason
    assert token not in str(caught.value)


def test_verify_hs256_issued_token_accepted() -> None:
    settings = Settings(jwt_secret=HS_SECRET)
    token = TokenIssuer.from_settings(settings).issue(
        user=ALICE, token_type="access", expires_in=HOUR
    )

    assert TokenVerifier.from_settings(settings).verify(token) == ALICE


def test_verify_rs256_issued_token_accepted(rsa_keys: KeyPair) -> None:
    issuer = TokenIssuer.from_settings(Settings(jwt_private_key=rsa_keys.private_pem))
    verifier = TokenVerifier.from_settings(Settings(jwt_public_key=rsa_keys.public_pem))
    token = issuer.issue(user=ALICE, token_type="access", expires_in=HOUR)

    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert verifier.verify(token) == ALICE
    assert verifier.algorithms == ("RS256",)


def test_verify_private_key_only_derives_public_key(rsa_keys: KeyPair) -> None:
    settings = Settings(jwt_private_key=rsa_keys.private_pem)
    token = TokenIssuer.from_settings(settings).issue(
        user=ALICE, token_type="access", expires_in=HOUR
    )

    assert TokenVerifier.from_settings(settings).verify(token) == ALICE


def test_verify_escaped_newlines_in_public_key_accepted(rsa_keys: KeyPair) -> None:
    escaped = rsa_keys.public_pem.replace("\n", "\\n")
    verifier = TokenVerifier.from_settings(Settings(jwt_public_key=escaped))
    token = jwt.encode(_claims(), rsa_keys.private_pem, algorithm="RS256")

    assert verifier.verify(token).user_id == ALICE_ID


def test_verify_both_keys_configured_accepts_both_algorithms(rsa_keys: KeyPair) -> None:
    verifier = _hs_verifier(jwt_public_key=rsa_keys.public_pem)
    rs_token = jwt.encode(_claims(), rsa_keys.private_pem, algorithm="RS256")

    assert verifier.algorithms == ("HS256", "RS256")
    assert verifier.verify(_hs_token()).user_id == ALICE_ID
    assert verifier.verify(rs_token).user_id == ALICE_ID


def test_verify_librechat_token_with_id_and_admin_role() -> None:
    token = _hs_token(
        sub=None,
        id=ALICE_ID,
        username="alice",
        provider="local",
        email="alice@example.com",
        role="ADMIN",
    )

    user = _hs_verifier().verify(token)

    assert user == UserContext(
        user_id=ALICE_ID, role="admin", username="alice", email="alice@example.com"
    )


def test_verify_expired_token_refused() -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    issuer = TokenIssuer(hs256_secret=HS_SECRET, clock=lambda: past)
    token = issuer.issue(user=ALICE, token_type="access", expires_in=HOUR)

    _refused(_hs_verifier(), token, "Token expired")


def test_verify_expired_within_leeway_accepted() -> None:
    now = int(time.time())
    token = _hs_token(iat=now - 60, exp=now - 5)

    assert _hs_verifier().verify(token).user_id == ALICE_ID


def test_verify_hs256_wrong_secret_refused() -> None:
    token = jwt.encode(_claims(), "another-secret-0123456789abcdef0123456789", algorithm="HS256")

    _refused(_hs_verifier(), token, "Invalid token signature")


def test_verify_rs256_other_key_refused(rsa_keys: KeyPair, other_rsa_keys: KeyPair) -> None:
    verifier = TokenVerifier.from_settings(Settings(jwt_public_key=rsa_keys.public_pem))
    token = jwt.encode(_claims(), other_rsa_keys.private_pem, algorithm="RS256")

    _refused(verifier, token, "Invalid token signature")


def test_verify_tampered_payload_refused() -> None:
    header, _, signature = _hs_token().split(".")
    forged = f"{header}.{b64url(_claims(role='admin'))}.{signature}"

    _refused(_hs_verifier(), forged, "Invalid token signature")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_verify_alg_none_refused(alg: str) -> None:
    _refused(
        _hs_verifier(),
        unsigned_token(_claims(role="admin"), alg=alg),
        "Unsupported token algorithm",
    )


def test_verify_unconfigured_algorithm_refused() -> None:
    token = jwt.encode(_claims(), HS_SECRET + "-longer-for-hs384", algorithm="HS384")

    _refused(_hs_verifier(), token, "Unsupported token algorithm")


def test_verify_non_string_algorithm_refused() -> None:
    token = f"{b64url({'alg': ['HS256'], 'typ': 'JWT'})}.{b64url(_claims())}.c2ln"

    _refused(_hs_verifier(), token, "Unsupported token algorithm")


def _hmac_token(payload: str, secret: bytes) -> str:
    """An HS256 token signed by hand over an already encoded payload segment."""
    signing_input = f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{payload}"
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def test_verify_hs256_signed_with_rsa_public_key_refused(rsa_keys: KeyPair) -> None:
    """Algorithm confusion: the public key PEM used as an HMAC secret must never verify."""
    verifier = TokenVerifier.from_settings(Settings(jwt_public_key=rsa_keys.public_pem))
    token = _hmac_token(b64url(_claims(role="admin")), rsa_keys.public_pem.encode())

    _refused(verifier, token, "Unsupported token algorithm")


def test_verify_hs256_signed_with_rsa_public_key_refused_when_both_configured(
    rsa_keys: KeyPair,
) -> None:
    verifier = _hs_verifier(jwt_public_key=rsa_keys.public_pem)
    token = _hmac_token(b64url(_claims(role="admin")), rsa_keys.public_pem.encode())

    _refused(verifier, token, "Invalid token signature")


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "e30.e30"])
def test_verify_malformed_token_refused(token: str) -> None:
    with pytest.raises(AuthenticationError, match=r"^Malformed token$"):
        _hs_verifier().verify(token)


def test_verify_non_json_payload_refused() -> None:
    token = _hmac_token("bm90LWpzb24", HS_SECRET.encode())  # "not-json"

    _refused(_hs_verifier(), token, "Malformed token")


def test_verify_missing_exp_refused() -> None:
    _refused(_hs_verifier(), _hs_token(exp=None), "Token missing required claim: exp")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"nbf": int(time.time()) + 3600}, "Token not yet valid"),
        ({"iat": "yesterday"}, "Invalid token issue time"),
        ({"sub": 42}, "Invalid token subject"),
        ({"jti": 7}, "Invalid token id"),
    ],
)
def test_verify_invalid_registered_claim_refused(overrides: dict[str, Any], reason: str) -> None:
    _refused(_hs_verifier(), _hs_token(**overrides), reason)


def test_verify_configured_issuer_and_audience_accepted() -> None:
    verifier = _hs_verifier(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)

    assert verifier.verify(_hs_token(iss=ISSUER, aud=AUDIENCE)).user_id == ALICE_ID


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.test"}, "Invalid token issuer"),
        ({"iss": None}, "Token missing required claim: iss"),
        ({"aud": "other-app"}, "Invalid token audience"),
        ({"aud": None}, "Token missing required claim: aud"),
    ],
)
def test_verify_wrong_issuer_or_audience_refused(overrides: dict[str, Any], reason: str) -> None:
    verifier = _hs_verifier(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    token = _hs_token(**{"iss": ISSUER, "aud": AUDIENCE, **overrides})

    _refused(verifier, token, reason)


def test_verify_unconfigured_audience_not_checked() -> None:
    assert _hs_verifier().verify(_hs_token(aud="anything")).user_id == ALICE_ID


def test_verify_refresh_token_as_access_refused() -> None:
    _refused(
        _hs_verifier(),
        _hs_token(token_use="refresh"),
        "Refresh token cannot be used as access token",
    )


@pytest.mark.parametrize("token_use", ["access", None])
def test_verify_access_token_as_refresh_refused(token_use: str | None) -> None:
    """Tokens without token_use (the external app's) are access tokens."""
    _refused(
        _hs_verifier(),
        _hs_token(token_use=token_use),
        "Access token cannot be used as refresh token",
        expected_type="refresh",
    )


def test_verify_refresh_token_as_refresh_accepted() -> None:
    user = _hs_verifier().verify(_hs_token(token_use="refresh"), expected_type="refresh")

    assert user.user_id == ALICE_ID


@pytest.mark.parametrize("token_use", ["id", 1])
def test_verify_unknown_token_type_refused(token_use: object) -> None:
    _refused(_hs_verifier(), _hs_token(token_use=token_use), "Unsupported token type")


def test_verify_missing_subject_refused() -> None:
    _refused(_hs_verifier(), _hs_token(sub=None), "Token has no subject (sub or id claim)")


def test_verify_refusal_chains_library_error() -> None:
    with pytest.raises(AuthenticationError) as caught:
        _hs_verifier().verify(_hs_token(exp=int(time.time()) - 3600))

    assert isinstance(caught.value.__cause__, jwt.ExpiredSignatureError)


def test_reason_unmapped_library_error_is_generic() -> None:
    assert _reason(jwt.InvalidKeyError("details")) == "Invalid token"


def test_verifier_without_keys_refused() -> None:
    with pytest.raises(AuthConfigurationError, match="No JWT verification key configured"):
        TokenVerifier.from_settings(Settings())


KeyPem = Callable[[KeyPair], str]


@pytest.mark.parametrize(
    ("field", "pem", "message"),
    [
        ("jwt_public_key", lambda _: "not a pem", "JWT_PUBLIC_KEY is not a PEM-encoded public key"),
        ("jwt_public_key", lambda k: k.public_pem, "JWT_PUBLIC_KEY must be an RSA key"),
        ("jwt_private_key", lambda _: "not a pem", "JWT_PRIVATE_KEY is not an unencrypted"),
        ("jwt_private_key", lambda k: k.private_pem, "JWT_PRIVATE_KEY must be an RSA key"),
    ],
)
def test_verifier_unusable_key_refused(
    ec_keys: KeyPair, field: str, pem: KeyPem, message: str
) -> None:
    settings = Settings.model_validate({field: SecretStr(pem(ec_keys))})

    with pytest.raises(AuthConfigurationError, match=message):
        TokenVerifier.from_settings(settings)
