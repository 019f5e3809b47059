"""Running a server's sync now (discovery + catalog reconciliation) and reading sync history.

``run_sync`` is shared by ``POST /api/v1/sync/servers/{id}``, the background worker and the
gateway's ``list_changed`` handling: it discovers the upstream's tools with the server's
credentials (``registry.services.discovery``, as registration and refresh do; never holding a
lock or transaction across the upstream call), then calls
``sync_server_tools``. A failed discovery is recorded as an ``error`` run and returned, not
raised: the run is the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from beanie import SortDirection
from bson import ObjectId

from packages.models import MCPServer
from packages.models.tools import SyncOutcome, SyncRun, SyncTrigger
from registry.auth import UserContext
from registry.auth.acl import Action, server_visibility_filter
from registry.config import Settings
from registry.errors import NotFoundError
from registry.services.catalog_sync import (
    SYNC_ACTOR,
    SyncRunResult,
    record_failed_sync,
    sync_server_tools,
)
from registry.services.discovery import CredentialUnavailableError, discover_server
from registry.services.pagination import PageWindow
from registry.services.server_store import as_server, load, object_id

log = structlog.get_logger("registry.catalog")

SERVER_NOT_FOUND = "Server not found"


def _parse_server_id(server_id: str) -> ObjectId:
    if not ObjectId.is_valid(server_id):
        raise NotFoundError(SERVER_NOT_FOUND, resource="server")
    return ObjectId(server_id)


async def run_sync(
    *,
    server: MCPServer,
    settings: Settings,
    trigger: SyncTrigger,
    actor_id: str = SYNC_ACTOR,
    record_credential_failures: bool = True,
) -> SyncRun:
    """Discover ``server``'s tools and reconcile the catalog; the recorded run either way.

    The run's ``outcome`` is ``error`` (with a safe message) when discovery failed. With
    ``record_credential_failures=False`` a missing per-user credential raises
    CredentialUnavailableError instead (the background worker skips such servers).
    """
    user_id = ObjectId(actor_id) if ObjectId.is_valid(actor_id) else None
    outcome = await discover_server(
        server, timeout_seconds=settings.discovery_timeout_seconds, user_id=user_id
    )
    if not outcome.succeeded:
        error = outcome.error_message or "Discovery failed"
        if outcome.credential_unavailable and not record_credential_failures:
            raise CredentialUnavailableError(error)
        return await record_failed_sync(
            server=server, trigger=trigger, actor_id=actor_id, error=error
        )
    result: SyncRunResult = await sync_server_tools(
        server=server,
        discovered=outcome.discovered,
        trigger=trigger,
        actor_id=actor_id,
        default_exposure=settings.default_tool_exposure,
    )
    return result.run


async def sync_server_now(*, user: UserContext, server_id: str, settings: Settings) -> SyncRun:
    """``POST /sync/servers/{id}``: sync now (admins, or the author of a private server).

    Raises NotFoundError for a server the caller cannot see and PermissionDeniedError for a
    shared server and a non-admin.
    """
    server = as_server(await load(user, object_id(server_id), Action.REFRESH))
    return await run_sync(server=server, settings=settings, trigger="manual", actor_id=user.user_id)


@dataclass(frozen=True, kw_only=True)
class SyncRunPage(PageWindow):
    items: list[SyncRun]


async def list_sync_runs(
    *,
    user: UserContext,
    server_id: str | None,
    outcome: SyncOutcome | None,
    page: int,
    per_page: int,
) -> SyncRunPage:
    """Sync runs, newest first: admins see all, users those of servers they can see."""
    clauses: list[dict[str, Any]] = []
    if server_id is not None:
        clauses.append({"serverId": _parse_server_id(server_id)})
    if outcome is not None:
        clauses.append({"outcome": outcome})
    if not user.is_admin:
        cursor = MCPServer.get_pymongo_collection().find(
            server_visibility_filter(user), projection={"_id": 1}
        )
        visible = [document["_id"] async for document in cursor]
        clauses.append({"serverId": {"$in": visible}})
    mongo_filter: dict[str, Any] = {"$and": clauses} if clauses else {}
    total = await SyncRun.find(mongo_filter).count()
    items = (
        await SyncRun.find(mongo_filter)
        .sort([("startedAt", SortDirection.DESCENDING), ("_id", SortDirection.DESCENDING)])
        .skip((page - 1) * per_page)
        .limit(per_page)
        .to_list()
    )
    return SyncRunPage(items=items, total=total, page=page, per_page=per_page)


async def last_discovered_at(server_id: ObjectId) -> datetime | None:
    """When the server's tools were last listed successfully (registration, refresh, a sync or
    an import): the newest successful run's finish time, or None when there was none."""
    run = await SyncRun.find_one(
        {"serverId": server_id, "outcome": "success"},
        sort=[("startedAt", SortDirection.DESCENDING), ("_id", SortDirection.DESCENDING)],
    )
    return run.finished_at if run is not None else None
