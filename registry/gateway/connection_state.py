"""In-memory connection state (design 004 "Connection State Management").

State is never written to MongoDB on transitions: only meaningful events (a successful connect,
an error) are persisted by the caller. Entries are bounded and expire when idle, so a state older
than the TTL reads as ``disconnected`` (stale).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from cachetools import TTLCache


class ConnectionState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"


@dataclass(frozen=True)
class StateEntry:
    state: ConnectionState
    updated_at: float
    config_version: str | None = None
    consecutive_failures: int = 0


class ConnectionStateStore:
    """App-level state per server and user-level state per (user, server)."""

    def __init__(self, *, maxsize: int = 10_000, ttl_seconds: float = 900.0) -> None:
        # A live connection is re-stamped at most this often, so it never reads as stale
        # while in use, without a cache write on every call.
        self._refresh_seconds = ttl_seconds / 4
        self._app: TTLCache[str, StateEntry] = TTLCache(maxsize=maxsize, ttl=ttl_seconds)
        self._user: TTLCache[tuple[str, str], StateEntry] = TTLCache(
            maxsize=maxsize, ttl=ttl_seconds
        )

    def _key(self, server_id: str, user_id: str | None) -> str | tuple[str, str]:
        return server_id if user_id is None else (user_id, server_id)

    def get(
        self, server_id: str, *, user_id: str | None = None, config_version: str | None = None
    ) -> StateEntry | None:
        """The live entry, or None when absent, expired, or recorded for another config."""
        entry = (
            self._app.get(server_id) if user_id is None else self._user.get((user_id, server_id))
        )
        if entry is None:
            return None
        if config_version is not None and entry.config_version not in (None, config_version):
            return None
        return entry

    def state(
        self, server_id: str, *, user_id: str | None = None, config_version: str | None = None
    ) -> ConnectionState:
        entry = self.get(server_id, user_id=user_id, config_version=config_version)
        return entry.state if entry else ConnectionState.DISCONNECTED

    def set(
        self,
        server_id: str,
        state: ConnectionState,
        *,
        user_id: str | None = None,
        config_version: str | None = None,
    ) -> StateEntry:
        """Record a transition; consecutive failures are counted across ERROR transitions."""
        previous = self.get(server_id, user_id=user_id)
        failures = 0
        if state is ConnectionState.ERROR:
            failures = (previous.consecutive_failures if previous else 0) + 1
        elif state is ConnectionState.CONNECTING and previous is not None:
            failures = previous.consecutive_failures
        entry = StateEntry(
            state=state,
            updated_at=time.time(),
            config_version=config_version,
            consecutive_failures=failures,
        )
        if user_id is None:
            self._app[server_id] = entry
        else:
            self._user[(user_id, server_id)] = entry
        return entry

    def record_success(
        self, server_id: str, *, user_id: str | None = None, config_version: str | None = None
    ) -> bool:
        """Mark the connection ``connected``; True when it was not (a (re)connect worth saving).

        Called on every successful relay, so the common case (already connected, recently
        stamped) is one cache read.
        """
        entry = self.get(server_id, user_id=user_id, config_version=config_version)
        if entry is not None and entry.state is ConnectionState.CONNECTED:
            if time.time() - entry.updated_at > self._refresh_seconds:
                self.set(
                    server_id,
                    ConnectionState.CONNECTED,
                    user_id=user_id,
                    config_version=config_version,
                )
            return False
        self.set(
            server_id, ConnectionState.CONNECTED, user_id=user_id, config_version=config_version
        )
        return True

    def forget_server(self, server_id: str) -> None:
        """Drop every state of a server (deleted, or its configuration changed)."""
        self._app.pop(server_id, None)
        for key in [key for key in self._user if key[1] == server_id]:
            self._user.pop(key, None)

    def user_states(self, user_id: str) -> dict[str, StateEntry]:
        """The caller's user-level entries, keyed by server id."""
        return {key[1]: entry for key, entry in self._user.items() if key[0] == user_id}
