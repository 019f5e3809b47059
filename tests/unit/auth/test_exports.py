"""The public surface of registry.auth: a test fails when it drifts (HX test_exported_members)."""

from __future__ import annotations

import registry.auth

EXPECTED = {
    "API_SCOPES",
    "SHARED_SCOPES",
    "Action",
    "AuthConfigurationError",
    "IssuedTokens",
    "Role",
    "ServerLike",
    "ServerScope",
    "TokenIssuer",
    "TokenType",
    "TokenVerifier",
    "UserContext",
    "api_scope_for",
    "authorize_scope",
    "authorize_server",
    "authorize_server_create",
    "authorize_token_manage",
    "authorize_token_read_value",
    "can_see_server",
    "refresh_access_token",
    "server_visibility_filter",
    "token_owner_filter",
    "tool_allowed_for",
}


def test_exported_members_match_expected() -> None:
    assert set(registry.auth.__all__) == EXPECTED
    for name in registry.auth.__all__:
        assert hasattr(registry.auth, name), name
