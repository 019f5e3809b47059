"""Identity, tokens and access decisions (never imports fastapi or registry.api).

- ``principal``: ``UserContext``, the authenticated caller.
- ``jwt``: ``TokenVerifier`` (bearer token → ``UserContext``) and ``TokenIssuer``.
- ``acl``: the one module that decides visibility and permissions.
"""

from registry.auth.acl import (
    SHARED_SCOPES,
    Action,
    ServerLike,
    ServerScope,
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
