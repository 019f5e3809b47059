"""Who may see and manage which catalog tools, composed from ``registry.auth.acl``.

No access rule is decided here: server visibility comes from ``server_visibility_filter`` /
``can_see_server``, management rights from ``authorize_server(user, Action.UPDATE, ...)`` and
per-tool role/group access from ``tool_allowed_for``. This module only combines them:

- a caller sees a tool when it can see the tool's server and either manages the server
  (admins; the author of a private server), or the tool is exposed (active + selected, server
  not disabled) and ``tool_allowed_for`` admits the caller's role or groups;
- a caller manages a tool when ``authorize_server(UPDATE)`` allows it on the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from packages.models import MCPServer
from registry.auth import UserContext
from registry.auth.acl import Action, authorize_server, can_see_server, server_visibility_filter
from registry.auth.acl import tool_allowed_for as acl_tool_allowed_for
from registry.errors import NotFoundError, PermissionDeniedError
from registry.services.tool_invariants import is_exposed

TOOL_NOT_FOUND = "Tool not found"


@dataclass(frozen=True)
class ServerAccess:
    """What one caller may do with one server (for tool decisions)."""

    server_id: ObjectId
    server_name: str
    status: str | None
    manages: bool


@dataclass(frozen=True)
class _ServerView:
    """The two fields acl.py needs, from a raw stored document."""

    author: Any
    scope: str | None


def _view(document: Mapping[str, Any]) -> _ServerView:
    return _ServerView(author=document.get("author"), scope=document.get("scope"))


def _manages(user: UserContext, document: Mapping[str, Any]) -> bool:
    try:
        authorize_server(user, Action.UPDATE, _view(document))
    except (NotFoundError, PermissionDeniedError):
        return False
    return True


async def visible_servers(
    user: UserContext, *, server_id: ObjectId | None = None
) -> dict[ObjectId, ServerAccess]:
    """The servers ``user`` can see (optionally just ``server_id``), keyed by id."""
    query: dict[str, Any] = dict(server_visibility_filter(user))
    if server_id is not None:
        query = {"$and": [query, {"_id": server_id}]} if query else {"_id": server_id}
    cursor = MCPServer.get_pymongo_collection().find(
        query, projection={"serverName": 1, "status": 1, "scope": 1, "author": 1}
    )
    return {
        document["_id"]: ServerAccess(
            server_id=document["_id"],
            server_name=document.get("serverName", ""),
            status=document.get("status"),
            manages=_manages(user, document),
        )
        async for document in cursor
    }


async def server_access(user: UserContext, server_id: ObjectId) -> ServerAccess:
    """The caller's access to one server; NotFoundError when it cannot see it."""
    document = await MCPServer.get_pymongo_collection().find_one(
        {"_id": server_id}, projection={"serverName": 1, "status": 1, "scope": 1, "author": 1}
    )
    if document is None or not can_see_server(user, _view(document)):
        raise NotFoundError(TOOL_NOT_FOUND, resource="tool")
    return ServerAccess(
        server_id=server_id,
        server_name=document.get("serverName", ""),
        status=document.get("status"),
        manages=_manages(user, document),
    )


def tool_allowed_for(user: UserContext, tool: Mapping[str, Any]) -> bool:
    """``acl.tool_allowed_for`` applied to a stored tool's ``allowedRoles``/``allowedGroups``."""
    return acl_tool_allowed_for(
        user,
        allowed_roles=tool.get("allowedRoles") or (),
        allowed_groups=tool.get("allowedGroups") or (),
    )


def can_use_tool(user: UserContext, tool: Mapping[str, Any], server: ServerAccess) -> bool:
    """Whether ``user`` may list and call ``tool`` through the gateway."""
    return is_exposed(
        exposure=tool.get("exposureState", "active"),
        registration=tool.get("registrationState", "selected"),
        server_status=server.status,
    ) and tool_allowed_for(user, tool)


def can_see_tool(user: UserContext, tool: Mapping[str, Any], server: ServerAccess) -> bool:
    """Whether ``user`` may read ``tool`` in the catalog API (see module doc)."""
    return server.manages or can_use_tool(user, tool, server)


def authorize_tool_manage(user: UserContext, server: ServerAccess) -> None:
    """Raise PermissionDeniedError unless ``user`` may change tools of ``server``."""
    if not server.manages:
        raise PermissionDeniedError(
            "Only admins (or the author of a private server) can change its tools",
            resource="tool",
        )


def filter_usable(
    user: UserContext,
    tools: Iterable[Mapping[str, Any]],
    servers: Mapping[ObjectId, ServerAccess],
) -> list[Mapping[str, Any]]:
    """The tools of ``tools`` that ``user`` may use (their server must be in ``servers``)."""
    return [
        tool
        for tool in tools
        if tool.get("serverId") in servers and can_use_tool(user, tool, servers[tool["serverId"]])
    ]
