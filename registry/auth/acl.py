"""The one place that decides who may see and do what with servers, tokens and tools.

Scopes (the API's, not servers'): a token that names scopes may do only what they name
(``authorize_scope``; an admin keeps its role only with the ``admin`` scope), and a token that
names none has its role's full rights. See docs/credentials.md, "Scopes".

Servers have three scopes:

- ``private_user``: visible to and managed by its author (and admins).
- ``shared_user`` / ``shared_app``: created by admins, visible to every user, modified,
  toggled, refreshed and deleted by admins only.

Admins see and manage everything. Visibility is expressed twice, as a MongoDB filter for lists
(``server_visibility_filter``) and as a predicate for one document (``can_see_server``); a unit
test checks that both agree. Whatever a caller cannot see is reported as missing
(NotFoundError), so another user's private server is indistinguishable from an absent one.

Ids: documents store ``author``/``userId`` as ObjectIds. Filters compare with the caller's id
as an ObjectId when it spells one, else with the raw string (such a caller owns nothing that
was stored by id). The predicates also accept an ``author`` held as a string (as API models
carry it) and compare it by value.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from bson import ObjectId

from registry.auth._ids import as_object_id
from registry.errors import InvalidRequestError, NotFoundError, PermissionDeniedError

if TYPE_CHECKING:
    from registry.auth.principal import UserContext


class Action(StrEnum):
    """What a caller wants to do with one server."""

    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    TOGGLE = "toggle"
    REFRESH = "refresh"
    USE = "use"


class ServerScope(StrEnum):
    SHARED_APP = "shared_app"
    SHARED_USER = "shared_user"
    PRIVATE_USER = "private_user"


SHARED_SCOPES: tuple[str, ...] = (ServerScope.SHARED_APP.value, ServerScope.SHARED_USER.value)
_ALL_SCOPES = frozenset(scope.value for scope in ServerScope)

# What a non-admin may do with a shared server it can see; everything else is admin-only.
_SHARED_ACTIONS_FOR_USERS = frozenset({Action.READ, Action.USE})

_SHARED_DENIALS: dict[Action, str] = {
    Action.DELETE: "Only admins can delete shared servers",
    Action.REFRESH: "Only admins can refresh shared servers",
}
_SHARED_DENIAL_DEFAULT = "Only admins can modify shared servers"

SERVER_NOT_FOUND = "Server not found"
TOKEN_NOT_FOUND = "Token not found or expired"


class ServerLike(Protocol):
    """Anything with the two fields access decisions need (a document or an API model)."""

    @property
    def author(self) -> Any: ...  # ObjectId in MongoDB, str in API models, None if unknown

    @property
    def scope(self) -> str | None: ...


def _id_value(user_id: str) -> ObjectId | str:
    """How a user id is compared with stored ``author``/``userId`` fields."""
    oid = as_object_id(user_id)
    return oid if oid is not None else user_id


def _is_user(user: UserContext, stored: object) -> bool:
    """True when ``stored`` (an ObjectId or a string id) names ``user``."""
    if isinstance(stored, ObjectId):
        return stored == user.object_id
    if isinstance(stored, str):
        return _id_value(stored) == _id_value(user.user_id)
    return False


# Servers


def server_visibility_filter(user: UserContext) -> dict[str, Any]:
    """The MongoDB filter (raw field names) selecting the servers ``user`` may see."""
    if user.is_admin:
        return {}
    return {
        "$or": [
            {"scope": {"$in": list(SHARED_SCOPES)}},
            {"scope": ServerScope.PRIVATE_USER.value, "author": _id_value(user.user_id)},
        ]
    }


def can_see_server(user: UserContext, server: ServerLike) -> bool:
    """The predicate form of ``server_visibility_filter`` for one server."""
    if user.is_admin or server.scope in SHARED_SCOPES:
        return True
    return server.scope == ServerScope.PRIVATE_USER and _is_user(user, server.author)


def authorize_server(user: UserContext, action: Action, server: ServerLike) -> None:
    """Allow ``action`` on ``server`` or raise.

    Raises NotFoundError("Server not found") when ``user`` cannot see the server and
    PermissionDeniedError when it sees a shared server but ``action`` is admin-only (every
    action except READ and USE). The author of a private server may do everything with it.
    """
    if not can_see_server(user, server):
        raise NotFoundError(SERVER_NOT_FOUND, resource="server")
    if user.is_admin or server.scope == ServerScope.PRIVATE_USER:
        return
    if action not in _SHARED_ACTIONS_FOR_USERS:
        raise PermissionDeniedError(
            _SHARED_DENIALS.get(action, _SHARED_DENIAL_DEFAULT), resource="server"
        )


def authorize_server_create(user: UserContext, scope: str) -> None:
    """Allow creating a server with ``scope`` or raise.

    Raises InvalidRequestError for an unknown scope and PermissionDeniedError when a
    non-admin asks for anything but ``private_user``.
    """
    if scope not in _ALL_SCOPES:
        raise InvalidRequestError(f"Unknown server scope: {scope!r}", resource="server")
    if not user.is_admin and scope != ServerScope.PRIVATE_USER:
        raise PermissionDeniedError("Only admins can create shared servers", resource="server")


# Tokens


def token_owner_filter(
    user: UserContext, *, user_id: str | None = None, include_expired: bool = False
) -> dict[str, Any]:
    """The MongoDB filter on the tokens collection for the tokens ``user`` may list.

    Users see their own tokens; ``user_id`` naming someone else raises PermissionDeniedError.
    Admins see every token, or one user's tokens when ``user_id`` is given. Only admins may
    ask for expired records too (``include_expired``; PermissionDeniedError otherwise): for
    anyone else an expired credential does not exist.
    """
    if include_expired and not user.is_admin:
        raise PermissionDeniedError("Only admins can list expired tokens", resource="token")
    if user.is_admin:
        return {} if user_id is None else {"userId": _id_value(user_id)}
    if user_id is not None and _id_value(user_id) != _id_value(user.user_id):
        raise PermissionDeniedError("Only admins can list other users' tokens", resource="token")
    return {"userId": _id_value(user.user_id)}


def authorize_token_read_value(user: UserContext, token_owner_id: ObjectId | str) -> None:
    """Allow reading a token's (decrypted) value: its owner only, never an admin.

    Raises NotFoundError("Token not found or expired") for anyone else.
    """
    if not _is_user(user, token_owner_id):
        raise NotFoundError(TOKEN_NOT_FOUND, resource="token")


def authorize_token_manage(user: UserContext, token_owner_id: ObjectId | str) -> None:
    """Allow listing the metadata of or deleting a token: its owner or an admin.

    Raises NotFoundError("Token not found or expired") for anyone else.
    """
    if not user.is_admin and not _is_user(user, token_owner_id):
        raise NotFoundError(TOKEN_NOT_FOUND, resource="token")


# Tools


def tool_allowed_for(
    user: UserContext, *, allowed_roles: Sequence[str], allowed_groups: Sequence[str]
) -> bool:
    """Whether ``user`` (who can already see the server) may call a governed tool.

    Empty ``allowed_roles`` and ``allowed_groups`` mean everyone; admins are always allowed;
    otherwise the user's role (case-insensitive) or one of its groups must be listed.
    """
    if user.is_admin or (not allowed_roles and not allowed_groups):
        return True
    roles = {role.lower() for role in allowed_roles}
    return user.role in roles or not set(user.groups).isdisjoint(allowed_groups)


# API scopes: what a token that names scopes may do

READ_SERVERS, WRITE_SERVERS = "read:servers", "write:servers"
READ_TOOLS, WRITE_TOOLS = "read:tools", "write:tools"
READ_TOKENS, WRITE_TOKENS = "read:tokens", "write:tokens"
USE_GATEWAY = "use:gateway"
ADMIN_SCOPE = "admin"
API_SCOPES: tuple[str, ...] = (
    READ_SERVERS,
    WRITE_SERVERS,
    READ_TOOLS,
    WRITE_TOOLS,
    READ_TOKENS,
    WRITE_TOKENS,
    USE_GATEWAY,
    ADMIN_SCOPE,
)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def api_scope_for(resource: str, method: str) -> str:
    """The scope an HTTP ``method`` on ``resource`` needs: ``read:`` for reads, else ``write:``."""
    return f"{'read' if method.upper() in _READ_METHODS else 'write'}:{resource}"


def authorize_scope(user: UserContext, scope: str) -> None:
    """Allow a request that needs ``scope`` or raise PermissionDeniedError.

    Scopes only ever restrict. A token that names none acts with its role's full rights (the
    external app's session tokens carry none); a token that names some (``requested_scopes``
    of ``POST /api/v1/tokens/generate``, ``token create --scope``) may do only what they name.
    """
    if user.scopes and scope not in user.scopes:
        raise PermissionDeniedError(
            f"This token's scopes ({' '.join(user.scopes)}) do not include {scope}",
            details={"required_scope": scope},
        )


def effective_role(role: str, scopes: Sequence[str]) -> str:
    """The role a token acts with: one that names scopes is an admin only with ``admin``.

    So an admin's narrowed automation token (``read:servers``) cannot read every user's
    servers, statistics or audit trail.
    """
    if role == "admin" and scopes and ADMIN_SCOPE not in scopes:
        return "user"
    return role


def grantable_scopes(user: UserContext) -> frozenset[str] | None:
    """The scopes ``user`` may put on tokens it issues itself (None: any).

    A token that names scopes grants at most those; otherwise an admin may grant any scope
    and a user every API scope but ``admin``.
    """
    if user.scopes:
        return frozenset(user.scopes)
    if user.is_admin:
        return None
    return frozenset(API_SCOPES) - {ADMIN_SCOPE}
