"""Identity, tokens and access decisions (never imports fastapi or registry.api).

- ``principal``: ``UserContext``, the authenticated caller.
- ``jwt``: ``TokenVerifier`` (bearer token → ``UserContext``) and ``TokenIssuer``.
- ``acl``: the one module that decides visibility and permissions.
"""

from registry.auth.acl import (
    API_SCOPES,
    SHARED_SCOPES,
    Action,
    ServerLike,
    ServerScope,
    api_scope_for,
    authorize_scope,
    authorize_server,
    authorize_server_create,
    authorize_token_manage,
    authorize_token_read_value,
    can_see_server,
    server_visibility_filter,
    token_owner_filter,
    tool_allowed_for,
)
from registry.auth.jwt import (
    AuthConfigurationError,
    IssuedTokens,
    TokenIssuer,
    TokenType,
    TokenVerifier,
    refresh_access_token,
)
from registry.auth.principal import Role, UserContext

__all__ = [
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
]
