"""API scopes: a token that names scopes may do only what they name (acl.authorize_scope)."""

from __future__ import annotations

import pytest

from registry.auth import API_SCOPES, TokenIssuer, UserContext, api_scope_for, authorize_scope
from registry.auth.acl import effective_role, grantable_scopes
from registry.errors import PermissionDeniedError
from tests.unit.auth._material import ADMIN_ID, ALICE_ID, HS_SECRET

UNSCOPED = UserContext(user_id=ALICE_ID)
READER = UserContext(user_id=ALICE_ID, scopes=("read:servers", "write:tokens"))
ADMIN = UserContext(user_id=ADMIN_ID, role="admin")


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("GET", "read:servers"),
        ("head", "read:servers"),
        ("POST", "write:servers"),
        ("PATCH", "write:servers"),
        ("PUT", "write:servers"),
        ("DELETE", "write:servers"),
    ],
)
def test_api_scope_for_method(method: str, expected: str) -> None:
    assert api_scope_for("servers", method) == expected


def test_authorize_scope_unscoped_token_has_its_roles_rights() -> None:
    for scope in API_SCOPES:
        authorize_scope(UNSCOPED, scope)


def test_authorize_scope_scoped_token_only_what_it_names() -> None:
    authorize_scope(READER, "read:servers")

    with pytest.raises(PermissionDeniedError) as denied:
        authorize_scope(READER, "write:servers")

    assert denied.value.details == {"required_scope": "write:servers"}
    assert "read:servers write:tokens" in denied.value.message


@pytest.mark.parametrize(
    ("role", "scopes", "expected"),
    [
        ("admin", (), "admin"),
        ("admin", ("read:servers",), "user"),
        ("admin", ("read:servers", "admin"), "admin"),
        ("user", ("admin",), "user"),  # a scope never grants
        ("user", (), "user"),
    ],
)
def test_effective_role(role: str, scopes: tuple[str, ...], expected: str) -> None:
    assert effective_role(role, scopes) == expected


def test_from_claims_scoped_admin_token_acts_as_user() -> None:
    """An admin's narrowed automation token read every user's servers and the audit trail."""
    narrowed = UserContext.from_claims({"sub": ADMIN_ID, "role": "admin", "scope": "read:servers"})
    full = UserContext.from_claims({"sub": ADMIN_ID, "role": "admin", "scope": "admin"})

    assert (narrowed.role, narrowed.is_admin) == ("user", False)
    assert full.is_admin


def test_grantable_scopes() -> None:
    assert grantable_scopes(READER) == frozenset({"read:servers", "write:tokens"})
    assert grantable_scopes(ADMIN) is None
    assert grantable_scopes(UNSCOPED) == frozenset(API_SCOPES) - {"admin"}


def _issuer() -> TokenIssuer:
    return TokenIssuer(hs256_secret=HS_SECRET)


def test_issue_pair_unscoped_user_may_narrow_to_api_scopes() -> None:
    issued = _issuer().issue_pair(
        user=UNSCOPED, requested_scopes=["read:servers", "use:gateway"], expires_in_hours=1
    )

    assert issued.scope == "read:servers use:gateway"


def test_issue_pair_user_cannot_grant_admin() -> None:
    with pytest.raises(PermissionDeniedError) as denied:
        _issuer().issue_pair(user=UNSCOPED, requested_scopes=["admin"], expires_in_hours=1)

    assert denied.value.details == {"scopes": ["admin"]}


def test_issue_pair_scoped_caller_cannot_issue_an_unscoped_token() -> None:
    """An empty scope list is a subset of anything, and a token naming no scopes has the
    role's full rights: a scoped token must not be able to mint one."""
    with pytest.raises(PermissionDeniedError):
        _issuer().issue_pair(user=READER, requested_scopes=[], expires_in_hours=1)


def test_issue_pair_scoped_caller_defaults_to_its_own_scopes() -> None:
    issued = _issuer().issue_pair(user=READER, requested_scopes=None, expires_in_hours=1)

    assert issued.scope == "read:servers write:tokens"
