"""Running a server's sync now (discovery + catalog reconciliation) and reading sync history.

``run_sync`` is shared by ``POST /api/v1/sync/servers/{id}``, the background worker and the
gateway's ``list_changed`` handling: it discovers the upstream's tools with the server's
credentials (never holding a lock or transaction across the upstream call), then calls
``sync_server_tools``. A failed discovery is recorded as an ``error`` run and returned, not
raised: the run is the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from beanie import SortDirection
from bson import ObjectId

from packages.database.encryption import DecryptionError, decrypt_value
from packages.models import MCPServer
from packages.models.tools import SyncOutcome, SyncRun, SyncTrigger
from registry.auth import UserContext
from registry.auth.acl import Action, authorize_server, server_visibility_filter
from registry.config import Settings
from registry.errors import NotFoundError, RegistryError, UpstreamError
from registry.gateway.upstream import DiscoveredTool, build_auth_headers, discover
from registry.services.catalog_sync import (
    SYNC_ACTOR,
    SyncRunResult,
    record_failed_sync,
    sync_server_tools,
)
from registry.services.pagination import PageWindow
from registry.services.tokens import find_user_credential

log = structlog.get_logger("registry.catalog")

SERVER_NOT_FOUND = "Server not found"
SUPPORTED_TRANSPORTS = {
    "streamable-http": "streamable-http",
    "http": "streamable-http",
    "sse": "sse",
}


class CredentialUnavailableError(UpstreamError):
    """No credential usable for discovery (per-user key or OAuth token missing)."""

    code = "credential_unavailable"


def _parse_server_id(server_id: str) -> ObjectId:
    if not ObjectId.is_valid(server_id):
        raise NotFoundError(SERVER_NOT_FOUND, resource="server")
    return ObjectId(server_id)


async def _user_token(*, user_id: ObjectId, kind: str, server_name: str) -> str | None:
    # The tokens service owns the record layout (types, identifiers, expiry, decryption).
    credential = await find_user_credential(
        user_id=user_id, server_name=server_name, now=datetime.now(UTC), kinds={kind}
    )
    return credential.value if credential is not None else None


async def discovery_headers(server: MCPServer, *, user_id: ObjectId | None) -> dict[str, str]:
    """The headers discovery sends: static headers plus the server's credential.

    Admin API keys are decrypted from the server document; per-user API keys and OAuth tokens
    come from ``user_id``'s token records (the caller of a manual sync, else the author).
    Raises CredentialUnavailableError when the needed credential is missing.
    """
    config = server.config.root
    headers: dict[str, str] = dict(getattr(config, "headers", None) or {})
    name = server.server_name
    api_key = config.api_key
    owner = user_id or server.author
    if api_key is not None:
        key: str | None = None
        if api_key.source == "admin" and api_key.key:
            try:
                key = decrypt_value(api_key.key)
            except DecryptionError as exc:
                raise CredentialUnavailableError(
                    "The server's API key cannot be decrypted"
                ) from exc
        elif api_key.source == "user":
            key = await _user_token(user_id=owner, kind="api_key", server_name=name)
        if not key:
            raise CredentialUnavailableError("No API key is available for this server")
        headers.update(
            build_auth_headers(
                authorization_type=api_key.authorization_type,
                key=key,
                custom_header=api_key.custom_header,
            )
        )
    elif config.requires_oauth or config.oauth is not None:
        token = await _user_token(user_id=owner, kind="oauth_access", server_name=name)
        if token is None:
            raise CredentialUnavailableError("No OAuth access token is available for this server")
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def discover_tools(
    server: MCPServer, *, settings: Settings, user_id: ObjectId | None
) -> tuple[DiscoveredTool, ...]:
    """List the upstream's tools. Raises UpstreamError (or a subclass) on any failure."""
    config = server.config.root
    transport = SUPPORTED_TRANSPORTS.get(str(getattr(config, "type", "")))
    url = getattr(config, "url", None)
    if transport is None or not url:
        raise UpstreamError("Only streamable-http and sse servers can be synchronised")
    headers = await discovery_headers(server, user_id=user_id)
    timeout_seconds = settings.discovery_timeout_seconds
    if config.init_timeout:
        # As registration does (registry.services.discovery): initTimeout (ms) may shorten it.
        timeout_seconds = min(timeout_seconds, config.init_timeout / 1000)
    result = await discover(
        url=url,
        transport="sse" if transport == "sse" else "streamable-http",
        headers=headers,
        timeout_seconds=timeout_seconds,
    )
    return result.tools


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
    try:
        tools = await discover_tools(server, settings=settings, user_id=user_id)
    except CredentialUnavailableError:
        if not record_credential_failures:
            raise
        return await record_failed_sync(
            server=server,
            trigger=trigger,
            actor_id=actor_id,
            error="No credential is available to discover this server's tools",
        )
    except RegistryError as exc:
        return await record_failed_sync(
            server=server, trigger=trigger, actor_id=actor_id, error=exc.message
        )
    result: SyncRunResult = await sync_server_tools(
        server=server,
        discovered=tools,
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
    server = await MCPServer.get(_parse_server_id(server_id))
    if server is None:
        raise NotFoundError(SERVER_NOT_FOUND, resource="server")
    authorize_server(user, Action.REFRESH, server)
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
