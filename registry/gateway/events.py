"""The few connection events the gateway persists to ``mcpservers`` (design 004).

In memory, every call updates the connection state. MongoDB sees only meaningful events:

- a successful (re)connect: ``lastConnected`` set, ``lastError``/``errorMessage`` removed, and
  ``status`` back to ``active`` if it was ``error``;
- a failure: ``lastError`` and ``errorMessage`` (at most once a second per server), and
  ``status: error`` once ``REGISTRY_GATEWAY_ERROR_THRESHOLD`` consecutive failures happened.

The writes are raw updates, so they leave ``updatedAt`` (the configuration version) alone, and
they run in background tasks, off the caller's response path. ``status`` only moves between
``active`` and ``error``: the update filters never touch a server an admin switched off.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import structlog
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from registry.gateway.background import BackgroundTasks
from registry.gateway.connection_state import ConnectionState, ConnectionStateStore
from registry.gateway.lookup import COLLECTION, ResolvedServer

log = structlog.get_logger("registry.gateway")

FAILURE_WRITE_INTERVAL_SECONDS = 1.0


class ServerEvents:
    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        *,
        states: ConnectionStateStore,
        error_threshold: int,
    ) -> None:
        self._collection = database[COLLECTION]
        self.states = states
        self._threshold = error_threshold
        self._last_failure_write: dict[str, float] = {}
        self._writes = BackgroundTasks(kind="connection_event")

    def connecting(self, server: ResolvedServer, *, user_id: str | None) -> None:
        self.states.set(
            server.id,
            ConnectionState.CONNECTING,
            user_id=user_id,
            config_version=server.config_version,
        )

    def succeeded(
        self, server: ResolvedServer, *, user_id: str | None, connect: bool = False
    ) -> None:
        """A call (or, with ``connect``, a session initialize) went through."""
        reconnected = self.states.record_success(
            server.id, user_id=user_id, config_version=server.config_version
        )
        if reconnected or connect:
            self._writes.spawn(self._write_connected(server))

    def failed(
        self, server: ResolvedServer, *, user_id: str | None, message: str, persist: bool = True
    ) -> None:
        """The upstream could not serve a call; ``persist=False`` for caller-specific causes."""
        entry = self.states.set(
            server.id, ConnectionState.ERROR, user_id=user_id, config_version=server.config_version
        )
        if not persist:
            return
        reached = entry.consecutive_failures >= self._threshold
        now = time.monotonic()
        last = self._last_failure_write.get(server.id, 0.0)
        if (
            now - last < FAILURE_WRITE_INTERVAL_SECONDS
            and entry.consecutive_failures != self._threshold
        ):
            return
        self._last_failure_write[server.id] = now
        self._writes.spawn(self._write_failed(server, message=message, mark_error=reached))

    async def drain(self) -> None:
        """Wait (bounded) for pending writes; used at shutdown and by tests."""
        await self._writes.drain()

    async def _write_connected(self, server: ResolvedServer) -> None:
        oid = ObjectId(server.id)
        try:
            await self._collection.update_one(
                {"_id": oid},
                {
                    "$set": {"lastConnected": _now()},
                    "$unset": {"lastError": "", "errorMessage": ""},
                },
            )
            result = await self._collection.update_one(
                {"_id": oid, "status": "error"}, {"$set": {"status": "active"}}
            )
        except Exception as exc:  # a background task boundary: log once, never crash the loop
            log.warning("server_event_write_failed", server=server.name, error=type(exc).__name__)
            return
        if result.modified_count:
            log.info("server_recovered", server=server.name, server_id=server.id)

    async def _write_failed(
        self, server: ResolvedServer, *, message: str, mark_error: bool
    ) -> None:
        oid = ObjectId(server.id)
        try:
            await self._collection.update_one(
                {"_id": oid}, {"$set": {"lastError": _now(), "errorMessage": message}}
            )
            marked = False
            if mark_error:
                result = await self._collection.update_one(
                    {"_id": oid, "status": "active"}, {"$set": {"status": "error"}}
                )
                marked = result.modified_count > 0
        except Exception as exc:  # a background task boundary: log once, never crash the loop
            log.warning("server_event_write_failed", server=server.name, error=type(exc).__name__)
            return
        if marked:
            log.warning(
                "server_marked_error", server=server.name, server_id=server.id, reason=message
            )


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
