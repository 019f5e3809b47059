"""TokenIssuer: claims, key selection, access/refresh pairs and refreshing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from registry.auth import (
    AuthConfigurationError,
    IssuedTokens,
    TokenIssuer,
    TokenVerifier,
    UserContext,
    refresh_access_token,
)
from registry.config import Settings
from registry.errors import AuthenticationError, InvalidRequestError, PermissionDeniedError
from tests.unit.auth._material import ADMIN_ID, ALICE_ID, AUDIENCE, HS_SECRET, ISSUER, KeyPair

ALICE = UserContext(
    user_id=ALICE_ID,
    username="alice",
    email="alice@example.com",
    groups=("eng",),
    scopes=("read:servers", "write:servers"),
)
ADMIN = UserContext(user_id=ADMIN_ID, role="admin")
HOUR = timedelta(hours=1)
NOW = datetime.now(UTC).replace(microsecond=0)


def _fixed_clock() -> datetime:
    return NOW


def _issuer(**values: Any) -> TokenIssuer:
    return TokenIssuer(hs256_secret=HS_SECRET, clock=_fixed_clock, **values)


def _verifier(**values: Any) -> TokenVerifier:
    return TokenVerifier(hs256_secret=HS_SECRET, **values)


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def test_issue_access_token_claims() -> None:
    token = _issuer(issuer=ISSUER, audience=AUDIENCE).issue(
        user=ALICE, token_type="access", expires_in=HOUR
    )

    claims = _claims(token)
    jti = claims.pop("jti")
    assert len(jti) == 32
    assert claims == {
        "sub": ALICE_ID,
        "role": "user",
        "username": "alice",
        "email": "alice@example.com",
        "groups": ["eng"],
        "scope": "read:servers write:servers",
        "token_use": "access",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 3600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_issue_optional_claims_omitted_when_unset() -> None:
    token = _issuer().issue(
        user=UserContext(user_id="ci-bot"), token_type="refresh", expires_in=HOUR
    )

    assert set(_claims(token)) == {
        "sub",
        "role",
        "groups",
        "scope",
        "token_use",
        "iat",
        "exp",
        "jti",
    }


def test_issue_unique_token_ids() -> None:
    issuer = _issuer()
    tokens = {issuer.issue(user=ALICE, token_type="access", expires_in=HOUR) for _ in range(3)}

    assert len({_claims(token)["jti"] for token in tokens}) == 3


def test_issue_explicit_scopes_and_extra_claims() -> None:
    token = _issuer().issue(
        user=ALICE,
        token_type="access",
        expires_in=HOUR,
        scopes=["read:servers", "read:servers"],
        extra_claims={"purpose": "ci"},
    )

    claims = _claims(token)
    assert (claims["scope"], claims["purpose"]) == ("read:servers", "ci")


@pytest.mark.parametrize("claim", ["sub", "exp", "token_use", "role"])
def test_issue_extra_claims_cannot_override_standard_claims(claim: str) -> None:
    with pytest.raises(ValueError, match=f"extra_claims cannot override: {claim}"):
        _issuer().issue(user=ALICE, token_type="access", expires_in=HOUR, extra_claims={claim: "x"})


@pytest.mark.parametrize("expires_in", [timedelta(0), timedelta(milliseconds=500), -HOUR])
def test_issue_non_positive_lifetime_refused(expires_in: timedelta) -> None:
    with pytest.raises(ValueError, match="expires_in must be at least one second"):
        _issuer().issue(user=ALICE, token_type="access", expires_in=expires_in)


@pytest.mark.parametrize("scopes", [[""], ["read servers"], ["a\tb"]])
def test_issue_malformed_scope_refused(scopes: list[str]) -> None:
    with pytest.raises(InvalidRequestError, match="non-empty and contain no whitespace"):
        _issuer().issue(user=ALICE, token_type="access", expires_in=HOUR, scopes=scopes)


def test_issue_scopes_as_string_refused() -> None:
    with pytest.raises(InvalidRequestError, match=r"^Scopes must be a list of strings$"):
        _issuer().issue(user=ALICE, token_type="access", expires_in=HOUR, scopes="read:servers")


def test_issue_without_signing_key_refused(rsa_keys: KeyPair) -> None:
    issuer = TokenIssuer.from_settings(Settings(jwt_public_key=rsa_keys.public_pem))

    assert issuer.algorithm is None
    with pytest.raises(AuthConfigurationError, match="No JWT signing key configured"):
        issuer.issue(user=ALICE, token_type="access", expires_in=HOUR)


def test_issue_prefers_rs256_when_private_key_configured(rsa_keys: KeyPair) -> None:
    settings = Settings(
        jwt_secret=HS_SECRET,
        jwt_public_key=rsa_keys.public_pem,
        jwt_private_key=rsa_keys.private_pem,
    )
    issuer = TokenIssuer.from_settings(settings)
    token = issuer.issue(user=ALICE, token_type="access", expires_in=HOUR)

    assert issuer.algorithm == "RS256"
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert TokenVerifier.from_settings(settings).verify(token) == ALICE


def test_issuer_from_settings_mismatched_keys_refused(
    rsa_keys: KeyPair, other_rsa_keys: KeyPair
) -> None:
    settings = Settings(
        jwt_public_key=rsa_keys.public_pem, jwt_private_key=other_rsa_keys.private_pem
    )

    with pytest.raises(AuthConfigurationError, match=r"^JWT_PRIVATE_KEY does not match"):
        TokenIssuer.from_settings(settings)


def test_issuer_from_settings_takes_expiry_bounds() -> None:
    settings = Settings(jwt_secret=HS_SECRET, jwt_max_expires_hours=8, jwt_refresh_expires_hours=48)
    issuer = TokenIssuer.from_settings(settings)

    assert (issuer.algorithm, issuer.max_expires_hours, issuer.refresh_expires_hours) == (
        "HS256",
        8,
        48,
    )


def test_issue_pair_requested_subset_granted() -> None:
    pair = _issuer(max_expires_hours=24, refresh_expires_hours=48).issue_pair(
        user=ALICE, requested_scopes=["read:servers"], expires_in_hours=8
    )

    assert (pair.expires_in, pair.refresh_expires_in, pair.token_type, pair.scope) == (
        8 * 3600,
        48 * 3600,
        "Bearer",
        "read:servers",
    )
    access = _verifier().verify(pair.access_token)
    refresh = _verifier().verify(pair.refresh_token, expected_type="refresh")
    assert access.scopes == refresh.scopes == ("read:servers",)
    assert access.user_id == refresh.user_id == ALICE_ID
    assert _claims(pair.access_token)["exp"] - _claims(pair.access_token)["iat"] == 8 * 3600
    assert _claims(pair.refresh_token)["exp"] - _claims(pair.refresh_token)["iat"] == 48 * 3600


def test_issue_pair_default_scopes_are_callers() -> None:
    pair = _issuer().issue_pair(user=ALICE, requested_scopes=None, expires_in_hours=1)

    assert pair.scope == "read:servers write:servers"


def test_issue_pair_scopes_not_granted_denied() -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        _issuer().issue_pair(
            user=ALICE,
            requested_scopes=["read:servers", "admin:all", "delete:servers"],
            expires_in_hours=1,
        )

    assert caught.value.message == (
        "Requested scopes not granted to the caller: admin:all, delete:servers"
    )
    assert caught.value.details == {"scopes": ["admin:all", "delete:servers"]}


def test_issue_pair_admin_may_request_any_scope() -> None:
    pair = _issuer().issue_pair(user=ADMIN, requested_scopes=["admin:all"], expires_in_hours=1)

    assert _verifier().verify(pair.access_token).scopes == ("admin:all",)


@pytest.mark.parametrize("hours", [0, -1, 25])
def test_issue_pair_expiry_out_of_bounds_invalid(hours: int) -> None:
    with pytest.raises(InvalidRequestError, match=r"^expires_in_hours must be between 1 and 24$"):
        _issuer(max_expires_hours=24).issue_pair(
            user=ALICE, requested_scopes=None, expires_in_hours=hours
        )


@pytest.mark.parametrize("hours", [1, 24])
def test_issue_pair_expiry_at_bounds_accepted(hours: int) -> None:
    pair = _issuer(max_expires_hours=24).issue_pair(
        user=ALICE, requested_scopes=None, expires_in_hours=hours
    )

    assert pair.expires_in == hours * 3600


def test_issue_pair_tokens_type_checked_both_ways() -> None:
    pair = _issuer().issue_pair(user=ALICE, requested_scopes=None, expires_in_hours=1)

    with pytest.raises(AuthenticationError, match=r"^Refresh token cannot be used as access"):
        _verifier().verify(pair.refresh_token)
    with pytest.raises(AuthenticationError, match=r"^Access token cannot be used as refresh"):
        _verifier().verify(pair.access_token, expected_type="refresh")


def test_issued_tokens_repr_hides_tokens() -> None:
    pair = _issuer().issue_pair(user=ALICE, requested_scopes=None, expires_in_hours=1)

    assert pair.access_token not in repr(pair)
    assert pair.refresh_token not in repr(pair)


def test_refresh_access_token_issues_new_access_token() -> None:
    issuer = _issuer(refresh_expires_hours=48)
    pair = issuer.issue_pair(user=ALICE, requested_scopes=["read:servers"], expires_in_hours=2)

    refreshed = refresh_access_token(
        verifier=_verifier(), issuer=issuer, refresh_token=pair.refresh_token
    )

    assert refreshed == IssuedTokens(
        access_token=refreshed.access_token,
        refresh_token=pair.refresh_token,
        expires_in=2 * 3600,
        refresh_expires_in=48 * 3600,
        scope="read:servers",
    )
    assert refreshed.access_token != pair.access_token
    assert _verifier().verify(refreshed.access_token) == ALICE.model_copy(
        update={"scopes": ("read:servers",)}
    )


def test_refresh_access_token_lifetime_capped_by_current_maximum() -> None:
    pair = _issuer(max_expires_hours=24).issue_pair(
        user=ALICE, requested_scopes=None, expires_in_hours=24
    )

    refreshed = refresh_access_token(
        verifier=_verifier(), issuer=_issuer(max_expires_hours=4), refresh_token=pair.refresh_token
    )

    assert refreshed.expires_in == 4 * 3600


def test_refresh_access_token_access_token_refused() -> None:
    pair = _issuer().issue_pair(user=ALICE, requested_scopes=None, expires_in_hours=1)

    with pytest.raises(AuthenticationError, match=r"^Access token cannot be used as refresh"):
        refresh_access_token(
            verifier=_verifier(), issuer=_issuer(), refresh_token=pair.access_token
        )


@pytest.mark.parametrize("extra", [None, {"access_ttl": "3600"}, {"access_ttl": 0}])
def test_refresh_access_token_without_access_lifetime_refused(
    extra: dict[str, Any] | None,
) -> None:
    token = _issuer().issue(user=ALICE, token_type="refresh", expires_in=HOUR, extra_claims=extra)

    with pytest.raises(AuthenticationError, match=r"^Malformed refresh token$"):
        refresh_access_token(verifier=_verifier(), issuer=_issuer(), refresh_token=token)
