"""Gateway sessions: the client's opaque ``Mcp-Session-Id`` mapped to an upstream session.

A client never sees an upstream's session id. ``initialize`` through the gateway creates a
``GatewaySession`` (who, which server, the upstream's session, the initialize message for a
transparent re-initialise); every later request must present the id with the same user and
server, else it is unknown (404, as the Streamable HTTP spec says for expired sessions).

Ids have the form ``{node}.{random}``: ``node`` names this process, so a load balancer can
route by the id alone (docs/gateway.md, "Scale-out"). The map is in memory, bounded, and
forgets sessions idle for ``REGISTRY_GATEWAY_SESSION_IDLE_SECONDS`` (least recently used first
when full); ``on_close`` releases what a session holds (an SSE bridge, the upstream's session).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.auth import UserContext
    from registry.gateway.sse_bridge import SseBridge

NODE_ID = secrets.token_hex(4)
# Re-stamping a session on every request would be a write per call; a coarse stamp is enough
# for an idle timeout measured in minutes.
_TOUCH_INTERVAL_SECONDS = 1.0


@dataclass(eq=False)
class UpstreamSession:
    """One session with one upstream (what a combined endpoint would hold per server)."""

    server_id: str
    initialize: bytes
    """The client's ``initialize`` message, replayed to re-initialise an expired session."""
    upstream_session_id: str | None = None
    protocol_version: str | None = None
    generation: int = 0
    """Bumped at every re-initialise, so concurrent requests re-initialise only once."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    bridge: SseBridge | None = None
    outbox: asyncio.Queue[bytes] | None = None
    """SSE upstreams: what the upstream sends unasked, for the client's GET stream."""


@dataclass(eq=False)
class GatewaySession:
    id: str
    user_id: str
    server_id: str
    server_name: str
    upstream: UpstreamSession
    last_seen: float = field(default_factory=time.monotonic)
    client_streams: int = 0
    """Open client GET streams (one at a time for a bridged SSE upstream)."""
    user: UserContext | None = None
    """Who opened it: ending the upstream session later uses their access and credential."""
    route: str = ""
    """The ``{name}`` of ``/mcp/{name}`` that reaches the server (its ``gateway_name``)."""


def new_session_id() -> str:
    return f"{NODE_ID}.{secrets.token_urlsafe(24)}"


class SessionStore:
    def __init__(
        self,
        *,
        maxsize: int,
        idle_seconds: float,
        on_close: Callable[[GatewaySession], None] | None = None,
    ) -> None:
        self._sessions: OrderedDict[str, GatewaySession] = OrderedDict()
        self._maxsize = maxsize
        self._idle = idle_seconds
        self.on_close = on_close
        """Called with every session that ends here (removed, evicted, expired or cleared)."""

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session: GatewaySession) -> None:
        self._sessions[session.id] = session
        while len(self._sessions) > self._maxsize:
            _, evicted = self._sessions.popitem(last=False)
            self._closed(evicted)

    def get(self, session_id: str) -> GatewaySession | None:
        """The live session with this id (idle ones are gone), re-stamped as used."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen > self._idle:
            self.remove(session_id)
            return None
        if now - session.last_seen > _TOUCH_INTERVAL_SECONDS:
            session.last_seen = now
            self._sessions.move_to_end(session_id)
        return session

    def remove(self, session_id: str) -> GatewaySession | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._closed(session)
        return session

    def sweep(self) -> int:
        """Forget every idle session (oldest first); returns how many were dropped."""
        now = time.monotonic()
        dropped = 0
        while self._sessions:
            session_id, session = next(iter(self._sessions.items()))
            if now - session.last_seen <= self._idle:
                break
            self.remove(session_id)
            dropped += 1
        return dropped

    def clear(self) -> None:
        while self._sessions:
            _, session = self._sessions.popitem(last=False)
            self._closed(session)

    def _closed(self, session: GatewaySession) -> None:
        if self.on_close is not None:
            self.on_close(session)
