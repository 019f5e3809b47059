"""Reading and governing catalog tools: list, get, update, soft-delete, history.

Reads MongoDB only (design 000's hard rule). Access decisions come from
``registry.services.catalog_policy`` (which composes ``registry.auth.acl``); state rules from
``registry.services.tool_invariants``. Every mutation is a compare-and-set on ``updatedAt``,
increments ``version``, writes a ``ToolVersion`` and an audit entry, and recomputes the
server's exposed tools.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from beanie import SortDirection
from bson import ObjectId
from pymongo import ReturnDocument

from packages.models.tools import (
    EXPOSED_FILTER,
    ExposureState,
    RegistrationState,
    Tool,
    ToolVersion,
)
from registry.auth import UserContext
from registry.errors import NotFoundError, PermissionDeniedError, StaleUpdateError
from registry.services import catalog_cache
from registry.services.audit import record_audit
from registry.services.catalog_metadata import effective_metadata
from registry.services.catalog_policy import (
    TOOL_NOT_FOUND,
    ServerAccess,
    authorize_tool_manage,
    can_see_tool,
    can_use_tool,
    server_access,
    visible_servers,
)
from registry.services.catalog_sync import (
    record_version,
    refresh_server_exposure,
    tool_snapshot,
)
from registry.services.pagination import PageWindow
from registry.services.server_documents import next_updated_at, to_bson_time, utcnow
from registry.services.tool_invariants import check_tool_change, server_exposes_tools

_SORT = [("serverName", 1), ("name", 1), ("_id", 1)]
_ACCESS_PROJECTION = {
    "serverId": 1,
    "allowedRoles": 1,
    "allowedGroups": 1,
    "exposureState": 1,
    "registrationState": 1,
}


class ToolChanges(TypedDict, total=False):
    """Validated PATCH fields (only the keys the caller sent are present)."""

    exposure_state: ExposureState
    registration_state: RegistrationState
    display_name: str | None
    tags: list[str]
    allowed_roles: list[str]
    allowed_groups: list[str]
    metadata: dict[str, Any]
    """Admin overrides of governance values; ``None`` for a field removes the override."""


_PLAIN_FIELDS: dict[str, str] = {
    "exposure_state": "exposureState",
    "registration_state": "registrationState",
    "display_name": "displayName",
    "tags": "tags",
    "allowed_roles": "allowedRoles",
    "allowed_groups": "allowedGroups",
}


@dataclass(frozen=True)
class ToolQuery:
    """List filters; ``None`` means "any"."""

    server_id: str | None = None
    exposure_state: ExposureState | None = None
    registration_state: RegistrationState | None = None
    tag: str | None = None
    query: str | None = None
    include_stale: bool = False
    include_disabled: bool = False


@dataclass(frozen=True, kw_only=True)
class ToolPage(PageWindow):
    items: list[Tool]


def _as_tool(document: Mapping[str, Any]) -> Tool:
    tool: Tool = Tool.model_validate(document)
    return tool


def parse_id(value: str, *, message: str = TOOL_NOT_FOUND, resource: str = "tool") -> ObjectId:
    """``value`` as an ObjectId; a malformed id names nothing, so NotFoundError."""
    if not ObjectId.is_valid(value):
        raise NotFoundError(message, resource=resource)
    return ObjectId(value)


def _state_filter(query: ToolQuery) -> dict[str, Any]:
    clauses: dict[str, Any] = {}
    if query.server_id is not None:
        clauses["serverId"] = parse_id(query.server_id, message="Server not found")
    if query.exposure_state is not None:
        clauses["exposureState"] = query.exposure_state
    elif not query.include_disabled:
        clauses["exposureState"] = {"$nin": ["disabled", "deleted"]}
    if query.registration_state is not None:
        clauses["registrationState"] = query.registration_state
    elif not query.include_stale:
        clauses["registrationState"] = {"$ne": "stale"}
    if query.tag is not None:
        clauses["tags"] = query.tag
    if query.query:
        pattern = {"$regex": re.escape(query.query), "$options": "i"}
        clauses["$or"] = [{"name": pattern}, {"displayName": pattern}, {"description": pattern}]
    return clauses


async def list_tools(*, user: UserContext, query: ToolQuery, page: int, per_page: int) -> ToolPage:
    """One page of the tools ``user`` may see, ordered by server name, tool name and id.

    By default stale, disabled and deleted tools are hidden; ``include_stale`` /
    ``include_disabled`` (admins only, else PermissionDeniedError) show them. Non-admins see
    the tools of servers they manage and the exposed tools of other visible servers that their
    role or groups allow.
    """
    if (query.include_stale or query.include_disabled) and not user.is_admin:
        raise PermissionDeniedError("Only admins can list stale or disabled tools", resource="tool")
    mongo_filter = _state_filter(query)
    collection = Tool.get_pymongo_collection()
    skip = (page - 1) * per_page
    if user.is_admin:
        total = await collection.count_documents(mongo_filter)
        documents = (
            await collection.find(mongo_filter).sort(_SORT).skip(skip).limit(per_page).to_list()
        )
        return ToolPage(
            items=[_as_tool(d) for d in documents],
            total=total,
            page=page,
            per_page=per_page,
        )
    servers = await visible_servers(user)
    ids = await _visible_tool_ids(user, mongo_filter, servers)
    page_ids = ids[skip : skip + per_page]
    documents = await collection.find({"_id": {"$in": page_ids}}).sort(_SORT).to_list()
    return ToolPage(
        items=[_as_tool(d) for d in documents],
        total=len(ids),
        page=page,
        per_page=per_page,
    )


async def _visible_tool_ids(
    user: UserContext, mongo_filter: dict[str, Any], servers: Mapping[ObjectId, ServerAccess]
) -> list[ObjectId]:
    managed = [sid for sid, access in servers.items() if access.manages]
    used = [
        sid
        for sid, access in servers.items()
        if not access.manages and server_exposes_tools(access.status)
    ]
    scope = {
        "$or": [
            {"serverId": {"$in": managed}},
            {
                "serverId": {"$in": used},
                "exposureState": "active",
                "registrationState": "selected",
            },
        ]
    }
    cursor = Tool.get_pymongo_collection().find(
        {"$and": [mongo_filter, scope]}, projection=_ACCESS_PROJECTION
    )
    return [
        document["_id"]
        async for document in cursor.sort(_SORT)
        if can_see_tool(user, document, servers[document["serverId"]])
    ]


async def _load(tool_id: str) -> dict[str, Any]:
    document = await Tool.get_pymongo_collection().find_one({"_id": parse_id(tool_id)})
    if document is None:
        raise NotFoundError(TOOL_NOT_FOUND, resource="tool", resource_id=tool_id)
    return dict(document)


async def _load_visible(user: UserContext, tool_id: str) -> tuple[dict[str, Any], ServerAccess]:
    document = await _load(tool_id)
    access = await server_access(user, document["serverId"])
    if not can_see_tool(user, document, access):
        raise NotFoundError(TOOL_NOT_FOUND, resource="tool", resource_id=tool_id)
    return document, access


async def get_tool(*, user: UserContext, tool_id: str) -> Tool:
    """One tool ``user`` may see; NotFoundError otherwise (also for malformed ids)."""
    document, _ = await _load_visible(user, tool_id)
    return _as_tool(document)


def _changes_to_set(changes: ToolChanges, stored: Mapping[str, Any]) -> dict[str, Any]:
    to_set: dict[str, Any] = {}
    for key, path in _PLAIN_FIELDS.items():
        if key in changes:
            value = changes[key]  # type: ignore[literal-required]  # keys from _PLAIN_FIELDS
            if isinstance(value, list):
                value = list(dict.fromkeys(value))
            if stored.get(path) != value:
                to_set[path] = value
    if "metadata" in changes:
        admin = dict(stored.get("adminMetadata") or {})
        for name, value in changes["metadata"].items():
            if value is None:
                admin.pop(name, None)
            else:
                admin[name] = value
        resolved = effective_metadata(
            name=stored["name"], annotations=stored.get("annotations"), admin=admin
        )
        candidate = {
            "adminMetadata": admin,
            "metadata": resolved.metadata.model_dump(),
            "metadataSource": resolved.sources,
        }
        for path, value in candidate.items():
            if stored.get(path) != value:
                to_set[path] = value
    return to_set


async def update_tool(
    *,
    user: UserContext,
    tool_id: str,
    changes: ToolChanges,
    expected_updated_at: datetime | None,
) -> Tool:
    """Apply ``changes`` to a tool (admins, or the author of its private server).

    ``expected_updated_at`` (optimistic concurrency): when given and the stored ``updatedAt``
    differs, StaleUpdateError (409). Raises NotFoundError, PermissionDeniedError,
    InvariantError / ConflictError (``tool_invariants``). A PATCH that changes nothing
    returns the tool unchanged, without a version or audit entry.
    """
    document, access = await _load_visible(user, tool_id)
    authorize_tool_manage(user, access)
    collection = Tool.get_pymongo_collection()
    while True:
        current = document.get("updatedAt")
        if expected_updated_at is not None and (
            current is None or to_bson_time(current) != to_bson_time(expected_updated_at)
        ):
            raise StaleUpdateError(
                "Tool was modified by another process",
                current_updated_at=current,
                provided_updated_at=expected_updated_at,
                resource="tool",
                resource_id=tool_id,
            )
        check_tool_change(
            current_exposure=document.get("exposureState", "active"),
            current_registration=document.get("registrationState", "selected"),
            new_exposure=changes.get("exposure_state"),
            new_registration=changes.get("registration_state"),
            server_status=access.status,
        )
        to_set = _changes_to_set(changes, document)
        if not to_set:
            return _as_tool(document)
        to_set["updatedAt"] = next_updated_at(current)
        stored = await collection.find_one_and_update(
            {"_id": document["_id"], "updatedAt": current},
            {"$set": to_set, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if stored is not None:
            break
        document = await _load(tool_id)
    await _after_change(
        user=user, before=document, after=stored, action="tool_updated", reason="updated"
    )
    return _as_tool(stored)


async def delete_tool(*, user: UserContext, tool_id: str) -> None:
    """Soft-delete a tool (admins only): ``exposureState`` becomes ``deleted`` for good.

    Deleting a deleted tool changes nothing. Raises PermissionDeniedError for non-admins and
    NotFoundError for an unknown tool.
    """
    user.validate_admin()
    document = await _load(tool_id)
    while document.get("exposureState") != "deleted":
        current = document.get("updatedAt")
        stored = await Tool.get_pymongo_collection().find_one_and_update(
            {"_id": document["_id"], "updatedAt": current},
            {
                "$set": {"exposureState": "deleted", "updatedAt": next_updated_at(current)},
                "$inc": {"version": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if stored is not None:
            await _after_change(
                user=user, before=document, after=stored, action="tool_deleted", reason="deleted"
            )
            return
        document = await _load(tool_id)


async def _after_change(
    *,
    user: UserContext,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    action: str,
    reason: str,
) -> None:
    await record_version(document=after, changed_by=user.user_id, reason=reason, at=utcnow())
    await record_audit(
        action=action,
        entity_type="tool",
        entity_id=str(after["_id"]),
        actor=user,
        before=_audit_view(before),
        after=_audit_view(after),
    )
    await refresh_server_exposure(server_id=after["serverId"])
    # Roles, groups and metadata do not show in the server document: always invalidate.
    catalog_cache.invalidate(after["serverId"])


def _audit_view(document: Mapping[str, Any]) -> dict[str, Any]:
    view = tool_snapshot(document)
    # Schemas can be large and are versioned in tool_versions; the audit entry names the hash.
    for key in ("inputSchema", "outputSchema", "annotations"):
        view.pop(key, None)
    view["serverId"] = str(document["serverId"])
    view["version"] = document.get("version")
    return view


@dataclass(frozen=True, kw_only=True)
class VersionPage(PageWindow):
    items: list[ToolVersion]


async def tool_history(*, user: UserContext, tool_id: str, page: int, per_page: int) -> VersionPage:
    """The versions of a tool ``user`` may see, newest first."""
    document, _ = await _load_visible(user, tool_id)
    query = ToolVersion.find({"toolId": document["_id"]})
    total = await query.count()
    items = (
        await ToolVersion.find({"toolId": document["_id"]})
        .sort([("version", SortDirection.DESCENDING), ("_id", SortDirection.DESCENDING)])
        .skip((page - 1) * per_page)
        .limit(per_page)
        .to_list()
    )
    return VersionPage(items=items, total=total, page=page, per_page=per_page)


async def usable_server_tools(*, user: UserContext, server_id: str) -> list[dict[str, Any]]:
    """The tools of one server ``user`` may use, in MCP's native shape, from the catalog.

    Exposed tools (active + selected, server enabled) that ``tool_allowed_for`` admits, in
    discovery order: ``name``, ``description``, ``inputSchema`` (plus ``title``,
    ``outputSchema`` and ``annotations`` when known). NotFoundError when the caller cannot see
    the server.
    """
    access = await server_access(user, parse_id(server_id, message="Server not found"))
    if not server_exposes_tools(access.status):
        return []
    cursor = (
        Tool.get_pymongo_collection()
        .find({"serverId": access.server_id, **EXPOSED_FILTER})
        .sort("_id", 1)
    )
    tools: list[dict[str, Any]] = []
    async for document in cursor:
        if not can_use_tool(user, document, access):
            continue
        entry: dict[str, Any] = {
            "name": document["name"],
            "description": document.get("description"),
            "inputSchema": document.get("inputSchema") or {"type": "object"},
        }
        for key in ("title", "outputSchema", "annotations"):
            if document.get(key) is not None:
                entry[key] = document[key]
        tools.append(entry)
    return tools
