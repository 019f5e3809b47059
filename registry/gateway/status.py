"""The caller's connection states (design 004 "Connection Lookup Flow").

For every server the caller can see: the app-level state for servers reached with the server's
own (or no) credential, the caller's user-level state for servers reached with each user's own
credential. Nothing here contacts an upstream (list endpoints read MongoDB and memory only), so
a connection that is absent or stale in memory reads as ``disconnected``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo.asynchronous.database import AsyncDatabase

from registry.auth import UserContext, server_visibility_filter
from registry.gateway.connection_state import ConnectionState, ConnectionStateStore
from registry.gateway.lookup import COLLECTION, config_version, credential_mode

MAX_SERVERS = 1000


@dataclass(frozen=True)
class ConnectionStatus:
    server_id: str
    server_name: str
    path: str | None
    status: str
    level: Literal["app", "user"]
    connection_state: ConnectionState
    consecutive_failures: int
    state_since: datetime | None
    last_connected: datetime | None
    last_error: datetime | None
    error_message: str | None


def connection_state_for(
    store: ConnectionStateStore, *, doc: dict[str, Any], user_id: str
) -> tuple[Literal["app", "user"], ConnectionState, int, datetime | None]:
    """(level, state, consecutive failures, since) of one raw ``mcpservers`` document."""
    level: Literal["app", "user"] = "user" if credential_mode(doc) == "user" else "app"
    entry = store.get(
        str(doc["_id"]),
        user_id=user_id if level == "user" else None,
        config_version=config_version(doc),
    )
    if entry is None:
        return level, ConnectionState.DISCONNECTED, 0, None
    since = datetime.fromtimestamp(entry.updated_at, UTC)
    return level, entry.state, entry.consecutive_failures, since


async def connection_statuses(
    *, database: AsyncDatabase[dict[str, Any]], store: ConnectionStateStore, user: UserContext
) -> list[ConnectionStatus]:
    """The caller's view of every server it can see, ordered by server name."""
    projection = {
        "serverName": 1,
        "path": 1,
        "scope": 1,
        "status": 1,
        "config": 1,
        "updatedAt": 1,
        "lastConnected": 1,
        "lastError": 1,
        "errorMessage": 1,
    }
    cursor = (
        database[COLLECTION]
        .find(server_visibility_filter(user), projection)
        .sort("serverName", 1)
        .limit(MAX_SERVERS)
    )
    statuses: list[ConnectionStatus] = []
    async for doc in cursor:
        level, state, failures, since = connection_state_for(store, doc=doc, user_id=user.user_id)
        statuses.append(
            ConnectionStatus(
                server_id=str(doc["_id"]),
                server_name=str(doc.get("serverName")),
                path=doc.get("path"),
                status=str(doc.get("status") or "active"),
                level=level,
                connection_state=state,
                consecutive_failures=failures,
                state_since=since,
                last_connected=doc.get("lastConnected"),
                last_error=doc.get("lastError"),
                error_message=doc.get("errorMessage"),
            )
        )
    return statuses
