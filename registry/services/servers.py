"""The server registry: list, read, register, update, delete, toggle and refresh MCP servers.

Every access decision goes through ``registry.auth.acl``; writes to existing servers are
compare-and-set updates (``server_store``). Upstream calls (discovery) always happen before
the write, never inside one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from packages.models import MCPServer
from packages.models.tools import ExposureState, SyncTrigger
from registry.auth import UserContext
from registry.auth.acl import (
    SERVER_NOT_FOUND,
    WRITE_SERVERS,
    Action,
    authorize_scope,
    authorize_server_create,
    server_visibility_filter,
)
from registry.errors import (
    ConflictError,
    IncompatibleDocumentError,
    NotFoundError,
    PermissionDeniedError,
)
from registry.gateway.connection_state import ConnectionStateStore
from registry.metrics import SERVER_OPERATIONS
from registry.services import catalog_cache
from registry.services.audit import record_audit
from registry.services.catalog_runs import last_discovered_at
from registry.services.catalog_sync import (
    forget_server,
    record_failed_sync,
    refresh_server_exposure,
    sync_server_tools,
)
from registry.services.catalog_tools import usable_server_tools
from registry.services.discovery import DiscoveryOutcome, discover_server
from registry.services.pagination import PageWindow
from registry.services.server_documents import (
    CONNECTION_FIELDS,
    ServerFields,
    apply_dotted,
    default_path,
    new_document,
    snapshot,
    update_operations,
    utcnow,
)
from registry.services.server_store import (
    Operations,
    as_server,
    collection,
    compare_and_set,
    conflict,
    load,
    object_id,
)

log = structlog.get_logger("registry.servers")


@dataclass(frozen=True, kw_only=True)
class ServerPage(PageWindow):
    servers: list[MCPServer]


@dataclass(frozen=True)
class ServerTools:
    server: MCPServer
    tools: list[dict[str, Any]]
    cached: bool
    retrieved_at: datetime | None
    """When the tools were last discovered (``retrievedAt``), not when the gateway last
    connected: serving a call is not a discovery."""


async def _record_mutation(
    operation: str,
    *,
    server_id: str,
    principal: UserContext,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    ok: bool,
) -> None:
    """The audit entry and the operation counter every server mutation leaves behind."""
    await record_audit(
        action=operation,
        entity_type="server",
        entity_id=server_id,
        actor=principal,
        before=before,
        after=after,
    )
    _count(operation, ok=ok)


def _count(operation: str, *, ok: bool) -> None:
    SERVER_OPERATIONS.labels(operation=operation, status="success" if ok else "error").inc()


@contextmanager
def _counted(operation: str) -> Iterator[None]:
    """Count an operation that raised as ``status="error"``, then let the error propagate."""
    try:
        yield
    except Exception:
        _count(operation, ok=False)
        raise


async def list_servers(
    *,
    principal: UserContext,
    query: str | None = None,
    scope: str | None = None,
    status: str | None = None,
    author: str | None = None,
    page: int = 1,
    per_page: int = 20,
) -> ServerPage:
    """One page of the servers ``principal`` may see, newest change first.

    ``query`` matches serverName, title, description and tags case-insensitively and
    literally (regex metacharacters are escaped). Only admins may filter by ``author``
    (PermissionDeniedError otherwise). List items carry no ``toolFunctions``.
    """
    conditions: list[dict[str, Any]] = [server_visibility_filter(principal)]
    if author is not None:
        if not principal.is_admin:
            raise PermissionDeniedError("Only admins can filter by author", resource="server")
        conditions.append({"author": ObjectId(author) if ObjectId.is_valid(author) else author})
    if scope is not None:
        conditions.append({"scope": scope})
    if status is not None:
        conditions.append({"status": status})
    if query:
        pattern = {"$regex": re.escape(query), "$options": "i"}
        fields = ("serverName", "config.title", "config.description", "tags")
        conditions.append({"$or": [{name: pattern} for name in fields]})
    conditions = [condition for condition in conditions if condition]
    filter_: dict[str, Any] = {"$and": conditions} if conditions else {}
    total = await collection().count_documents(filter_)
    cursor = (
        collection()
        .find(filter_, {"config.toolFunctions": 0})
        .sort([("updatedAt", -1), ("_id", 1)])
        .skip((page - 1) * per_page)
        .limit(per_page)
    )
    servers: list[MCPServer] = []
    async for raw in cursor:
        try:
            servers.append(as_server(raw))
        except IncompatibleDocumentError as exc:
            # One foreign document must not make the whole list fail; it stays reachable
            # (and reported) through GET /servers/{id}.
            log.warning("server_document_incompatible", server_id=exc.resource_id)
    return ServerPage(servers=servers, total=total, page=page, per_page=per_page)


async def get_server(*, principal: UserContext, server_id: str) -> MCPServer:
    """The server ``server_id`` if ``principal`` may see it; NotFoundError otherwise."""
    return as_server(await load(principal, object_id(server_id), Action.READ))


async def _prepare_registration(
    *, principal: UserContext, fields: ServerFields, timeout_seconds: float
) -> tuple[dict[str, Any], DiscoveryOutcome]:
    """Check permission and uniqueness, then discover: the document to insert."""
    authorize_server_create(principal, fields["scope"])
    author = principal.object_id
    if author is None:
        raise PermissionDeniedError(
            "Only users identified by an ObjectId can register servers", resource="server"
        )
    name = fields["server_name"]
    path = fields.get("path") or default_path(name)
    # A cheap early answer before the upstream call; the unique indexes remain the guard.
    taken = await collection().find_one(
        {"$or": [{"serverName": name}, {"path": path}]}, {"serverName": 1}
    )
    if taken is not None:
        field = "serverName" if taken.get("serverName") == name else "path"
        raise ConflictError(f"A server with this {field} already exists", resource="server")
    document = new_document(fields=fields, author=author, now=utcnow())
    outcome = await discover_server(
        as_server(document), timeout_seconds=timeout_seconds, user_id=author
    )
    to_set, to_unset = outcome.updates(current_status="active", include_tools=False)
    apply_dotted(document, to_set=to_set, to_unset=to_unset)
    return document, outcome


async def _sync_catalog(
    *,
    oid: ObjectId,
    outcome: DiscoveryOutcome,
    trigger: SyncTrigger,
    principal: UserContext,
    default_tool_exposure: ExposureState,
) -> dict[str, Any]:
    """Feed a discovery outcome to the tool catalog, which writes the server's exposed
    ``tools``/``toolFunctions``/``numTools``; the stored document afterwards."""
    raw = await collection().find_one({"_id": oid})
    if raw is None:
        raise NotFoundError(SERVER_NOT_FOUND, resource="server", resource_id=str(oid))
    server = as_server(raw)
    if outcome.succeeded:
        await sync_server_tools(
            server=server,
            discovered=outcome.discovered,
            trigger=trigger,
            actor_id=principal.user_id,
            default_exposure=default_tool_exposure,
        )
    else:
        await record_failed_sync(
            server=server,
            trigger=trigger,
            actor_id=principal.user_id,
            error=outcome.error_message or "Discovery failed",
        )
    latest = await collection().find_one({"_id": oid})
    return dict(latest) if latest is not None else dict(raw)


async def register_server(
    *,
    principal: UserContext,
    fields: ServerFields,
    discovery_timeout_seconds: float,
    default_tool_exposure: ExposureState = "active",
) -> MCPServer:
    """Create a server, discovering its tools first.

    The server is created even when discovery fails (``status: error`` with ``lastError`` and
    ``errorMessage``). Raises PermissionDeniedError when ``principal`` may not create the
    scope (or has no ObjectId to be stored as author) and ConflictError when the serverName
    or path is taken.
    """
    with _counted("register"):
        document, outcome = await _prepare_registration(
            principal=principal, fields=fields, timeout_seconds=discovery_timeout_seconds
        )
        try:
            result = await collection().insert_one(document)
        except DuplicateKeyError as exc:
            raise conflict(exc) from exc
    # A client that asked for /mcp/{name} before it existed must not be told 404 from cache.
    catalog_cache.server_changed(result.inserted_id)
    name = fields["server_name"]
    server_id = str(result.inserted_id)
    await record_audit(
        action="create",
        entity_type="server",
        entity_id=server_id,
        actor=principal,
        after=snapshot(document),
    )
    _count("register", ok=outcome.succeeded)
    log.info(
        "server_registered",
        server_id=server_id,
        server_name=name,
        scope=fields["scope"],
        status=document["status"],
        num_tools=outcome.num_tools,
    )
    stored = await _sync_catalog(
        oid=result.inserted_id,
        outcome=outcome,
        trigger="register",
        principal=principal,
        default_tool_exposure=default_tool_exposure,
    )
    return as_server(stored)


async def update_server(
    *,
    principal: UserContext,
    server_id: str,
    fields: ServerFields,
    provided_updated_at: datetime | None,
    states: ConnectionStateStore,
) -> MCPServer:
    """Apply a partial update with optimistic concurrency.

    With ``provided_updated_at`` the stored ``updatedAt`` must equal it, else StaleUpdateError
    (409 with both timestamps). Omitted or masked secrets keep the stored ciphertexts. A
    non-admin may not move a server to a shared scope (PermissionDeniedError); a taken path
    raises ConflictError. Changing connection fields forgets live connection states; the
    stored tools are refreshed by the next refresh.
    """
    oid = object_id(server_id)
    server_id = str(oid)  # one spelling for state keys, audit and logs (ids are hex, any case)

    def build(stored: Mapping[str, Any]) -> Operations:
        # After the visibility check, so another user's private server still reads as 404.
        if "scope" in fields:
            authorize_server_create(principal, fields["scope"])
        return update_operations(fields=fields, stored=stored)

    with _counted("update"):
        before, after = await compare_and_set(
            principal=principal,
            oid=oid,
            action=Action.UPDATE,
            build=build,
            provided_updated_at=provided_updated_at,
        )
    # Path, scope, status or connection may have changed: the gateway must not keep
    # serving what it cached (a server switched off by PATCH is refused at once).
    catalog_cache.server_changed(oid)
    if "status" in fields:
        after = await _expose_for_status(oid, after)
    if CONNECTION_FIELDS.intersection(fields):
        states.forget_server(server_id)
    await _record_mutation(
        "update",
        server_id=server_id,
        principal=principal,
        before=snapshot(before),
        after=snapshot(after),
        ok=True,
    )
    log.info("server_updated", server_id=server_id, fields=sorted(fields))
    return as_server(after)


async def delete_server(
    *, principal: UserContext, server_id: str, states: ConnectionStateStore
) -> None:
    """Delete a server. NotFoundError when invisible or gone; PermissionDeniedError for a
    non-admin and a shared server ("Only admins can delete shared servers")."""
    oid = object_id(server_id)
    server_id = str(oid)  # one spelling for state keys, audit and logs (ids are hex, any case)
    with _counted("delete"):
        before = await load(principal, oid, Action.DELETE)
        result = await collection().delete_one({"_id": oid})
        if result.deleted_count == 0:
            raise NotFoundError(SERVER_NOT_FOUND, resource="server", resource_id=server_id)
    catalog_cache.server_changed(oid)
    states.forget_server(server_id)
    await forget_server(server_id=oid)
    await _record_mutation(
        "delete",
        server_id=server_id,
        principal=principal,
        before=snapshot(before),
        after=None,
        ok=True,
    )
    log.info("server_deleted", server_id=server_id, server_name=before.get("serverName"))


async def _expose_for_status(oid: ObjectId, after: dict[str, Any]) -> dict[str, Any]:
    """Recompute the exposed tools after a status change (a disabled server exposes none,
    enabling it restores them); the stored document afterwards (``after`` if it is gone)."""
    await refresh_server_exposure(server_id=oid)
    latest = await collection().find_one({"_id": oid})
    return dict(latest) if latest is not None else after


async def toggle_server(*, principal: UserContext, server_id: str, enabled: bool) -> MCPServer:
    """Switch a server on (``status: active``) or off (``status: inactive``)."""
    status = "active" if enabled else "inactive"
    oid = object_id(server_id)
    server_id = str(oid)  # one spelling for audit and logs (ids are hex, any case)
    with _counted("toggle"):
        before, after = await compare_and_set(
            principal=principal,
            oid=oid,
            action=Action.TOGGLE,
            build=lambda _stored: ({"status": status}, {}),
        )
    # Before anything else: the gateway of this process must stop (or start) serving it now.
    catalog_cache.server_changed(oid)
    after = await _expose_for_status(oid, after)
    await _record_mutation(
        "toggle",
        server_id=server_id,
        principal=principal,
        before=snapshot(before),
        after=snapshot(after),
        ok=True,
    )
    log.info("server_toggled", server_id=server_id, status=status)
    return as_server(after)


async def refresh_server(
    *,
    principal: UserContext,
    server_id: str,
    discovery_timeout_seconds: float,
    default_tool_exposure: ExposureState = "active",
) -> tuple[MCPServer, DiscoveryOutcome]:
    """Re-discover a server's tools and store the outcome (success or error fields).

    Access is checked before the upstream call and again when writing. A server switched
    off stays ``inactive`` after a successful refresh; otherwise success makes it ``active``.
    """
    oid = object_id(server_id)
    server_id = str(oid)  # one spelling for audit and logs (ids are hex, any case)
    with _counted("refresh"):
        current = as_server(await load(principal, oid, Action.REFRESH))
        outcome = await discover_server(
            current, timeout_seconds=discovery_timeout_seconds, user_id=principal.object_id
        )
        before, after = await compare_and_set(
            principal=principal,
            oid=oid,
            action=Action.REFRESH,
            build=lambda stored: outcome.updates(
                current_status=stored.get("status"), include_tools=False
            ),
        )
        after = await _sync_catalog(
            oid=oid,
            outcome=outcome,
            trigger="refresh",
            principal=principal,
            default_tool_exposure=default_tool_exposure,
        )
    await _record_mutation(
        "refresh",
        server_id=server_id,
        principal=principal,
        before=snapshot(before),
        after=snapshot(after),
        ok=outcome.succeeded,
    )
    log.info(
        "server_refreshed",
        server_id=server_id,
        status=after.get("status"),
        num_tools=outcome.num_tools,
    )
    return as_server(after), outcome


async def get_server_tools(
    *,
    principal: UserContext,
    server_id: str,
    refresh: bool = False,
    discovery_timeout_seconds: float,
    default_tool_exposure: ExposureState = "active",
) -> ServerTools:
    """The server's tools the caller may use, in MCP format, from the tool catalog; with
    ``refresh`` re-discover first (which needs the refresh permission, and ``write:servers``
    from a token that names scopes: the GET changes the server)."""
    if refresh:
        authorize_scope(principal, WRITE_SERVERS)
        server, _ = await refresh_server(
            principal=principal,
            server_id=server_id,
            discovery_timeout_seconds=discovery_timeout_seconds,
            default_tool_exposure=default_tool_exposure,
        )
    else:
        server = await get_server(principal=principal, server_id=server_id)
    tools = await usable_server_tools(user=principal, server_id=server_id)
    assert server.id is not None
    return ServerTools(
        server=server,
        tools=tools,
        cached=not refresh,
        retrieved_at=await last_discovered_at(server.id),
    )
