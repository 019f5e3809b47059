"""The combined MCP server at ``/mcp``: every tool the caller may use, across visible servers.

Design 000's "mega / combined MCP server". Tools are named ``{tool}_mcp_{serverName}`` (the
external app's convention). The endpoint answers ``initialize``, ``ping`` and ``tools/list``
itself, from the catalog (no upstream call); a ``tools/call`` is renamed back to the upstream's
tool name and relayed through ``Gateway.watched_exchange`` — the same disconnect handling,
credential, policy and relay path as ``/mcp/{server}`` — on an upstream session opened lazily
per (combined session, server).
Tool lists never include tools of servers the caller cannot see (``acl.server_visibility_filter``
in the query; ``Gateway.authorize`` again when a call is routed) or that its role/groups may
not use (``tool_allowed_for``). A list costs two cached queries whatever the number of servers
(visible servers, then their exposed tools); a name two tools would share is offered for
neither (docs/catalog.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from bson import ObjectId
from cachetools import LRUCache, TTLCache
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pymongo.asynchronous.database import AsyncDatabase
from starlette.types import Receive, Scope, Send

from registry.auth import UserContext
from registry.auth.acl import server_visibility_filter
from registry.errors import InvalidRequestError, NotFoundError, RegistryError
from registry.gateway import policy
from registry.gateway.catalog import CatalogTool, ToolCatalog
from registry.gateway.gateway import Gateway, _read_body, _rejection, _status
from registry.gateway.jsonrpc import (
    TOOL_NOT_ALLOWED,
    UPSTREAM_UNAVAILABLE,
    Message,
    RpcError,
    parse_message,
)
from registry.gateway.lookup import COLLECTION, ResolvedServer, gateway_name_for
from registry.gateway.responses import SESSION_HEADER, send_api_error, send_bytes, send_rpc_error
from registry.gateway.sessions import GatewaySession, new_session_id
from registry.gateway.upstream import transport_for

log = structlog.get_logger("registry.gateway")

METHOD_NOT_FOUND = -32601
COMBINED_SERVER = "_combined"
"""The ``server`` of log lines and metrics about the combined endpoint itself."""
SEPARATOR = "_mcp_"
SERVER_INFO = {"name": "mcp-gateway-registry", "version": "0.1.0"}
VISIBLE_SERVERS_TTL_SECONDS = 5.0
MAX_CACHED_CALLERS = 10_000
MAX_REPORTED_COLLISIONS = 1_000
_VISIBLE_PROJECTION = {"serverName": 1, "path": 1, "config.type": 1}
INSTRUCTIONS = (
    "Every tool you may use across the registry's MCP servers, named {tool}_mcp_{serverName}."
)
_INIT_ACCEPT = {b"accept": b"application/json, text/event-stream"}


@dataclass(eq=False)
class CombinedSession:
    id: str
    user_id: str
    protocol_version: str
    upstreams: dict[str, str] = field(default_factory=dict)
    """server id → the gateway session id used for that server."""
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    last_seen: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class VisibleServer:
    """A server as the combined list needs it; routing resolves the rest (``Gateway.authorize``)."""

    id: str
    name: str
    """``serverName``: the suffix of its tools' combined names."""
    gateway_name: str
    """What ``/mcp/{name}`` calls it (``lookup.gateway_name_for``)."""


def _visible_server(doc: Mapping[str, Any]) -> VisibleServer | None:
    """None for a server the gateway cannot relay (stdio, websocket), as ``authorize`` says."""
    if transport_for((doc.get("config") or {}).get("type")) is None:
        return None
    name = str(doc.get("serverName"))
    return VisibleServer(
        id=str(doc["_id"]), name=name, gateway_name=gateway_name_for(doc.get("path"), name)
    )


@dataclass(frozen=True)
class Route:
    server: VisibleServer
    tool: CatalogTool


class _Capture:
    """An ASGI ``send`` that keeps the response (for upstream exchanges we answer ourselves)."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {name.lower(): value for name, value in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            self.body.extend(message.get("body", b""))


class CombinedServer:
    """``/mcp``: answer locally, route ``tools/call`` to the owning server's upstream."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        database: AsyncDatabase[dict[str, Any]],
        idle_seconds: float,
        maxsize: int,
    ) -> None:
        self.gateway = gateway
        assert gateway.tool_policy is not None, "the combined server lists tools from the catalog"
        self.catalog: ToolCatalog = gateway.tool_policy.catalog
        self._servers = database[COLLECTION]
        self._idle = idle_seconds
        self._maxsize = maxsize
        self._sessions: OrderedDict[str, CombinedSession] = OrderedDict()
        self._visible: TTLCache[tuple[str, str, tuple[str, ...]], list[VisibleServer]] = TTLCache(
            maxsize=MAX_CACHED_CALLERS, ttl=VISIBLE_SERVERS_TTL_SECONDS
        )
        # Ticks on every server change, so a read under way then is not cached.
        self._servers_clock = 0
        gateway.lookup.subscribe(self._servers_changed)
        self._collisions_seen: LRUCache[tuple[str, frozenset[tuple[str, str]]], bool] = LRUCache(
            maxsize=MAX_REPORTED_COLLISIONS
        )

    # -- entry ---------------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = scope.get("state", {}).get("request_id")
        policy.bind(self.gateway.tool_policy)
        method: str = scope["method"]
        user: UserContext | None = None
        try:
            user = self.gateway.principals.authenticate(headers.get(b"authorization"))
            if method == "POST":
                await self._post(receive, send, headers, user)
            elif method == "DELETE":
                session = self._session(headers, user)
                self._close(session)
                await send_bytes(send, status=200, body=b"")
                self._record(user, method, "ok", started)
            else:
                # No server→client stream: the combined server sends no notifications.
                await send_bytes(
                    send,
                    status=405,
                    body=b'{"error":"method_not_allowed","message":"Use POST or DELETE"}',
                    headers=[(b"allow", b"POST, DELETE")],
                )
        except RegistryError as exc:
            await send_api_error(
                send, status=_status(exc), code=exc.code, message=exc.message, request_id=request_id
            )
            self._record(user, method, _rejection(exc), started)

    def _record(self, user: UserContext | None, method: str, outcome: str, started: float) -> None:
        """The ``gateway_call`` line and metrics of a request the combined endpoint answered
        at the HTTP level (its relayed tool calls are recorded per server)."""
        self.gateway._record(
            user_id=user.user_id if user is not None else None,
            server_name=COMBINED_SERVER,
            server=None,
            method=method,
            tool=None,
            outcome=outcome,
            started=started,
            server_label=COMBINED_SERVER,
        )

    async def _post(
        self, receive: Receive, send: Send, headers: dict[bytes, bytes], user: UserContext
    ) -> None:
        body = await _read_body(receive)
        try:
            message = parse_message(body)
        except RpcError as exc:
            await send_rpc_error(
                send, request_id=None, code=exc.code, message=exc.message, status=400
            )
            return
        if message.method == "initialize":
            await self._initialize(send, message, user)
            return
        session = self._session(headers, user)
        if not message.is_request:
            await send_bytes(send, status=202, body=b"")
            return
        if message.method == "ping":
            await self._result(send, message, {})
        elif message.method == "tools/list":
            routes = await self.routes(user)
            tools = [route.tool.as_mcp(name=name) for name, route in routes.items()]
            await self._result(send, message, {"tools": tools})
        elif message.method == "tools/call":
            await self._call(receive, send, headers, message, user, session)
        else:
            await send_rpc_error(
                send,
                request_id=message.id,
                code=METHOD_NOT_FOUND,
                message=f"Method not found: {message.method}",
            )

    # -- sessions --------------------------------------------------------------------------------

    async def _initialize(self, send: Send, message: Message, user: UserContext) -> None:
        params = message.body.get("params")
        requested = params.get("protocolVersion") if isinstance(params, dict) else None
        version = (
            requested
            if isinstance(requested, str) and requested in HANDSHAKE_PROTOCOL_VERSIONS
            else LATEST_HANDSHAKE_VERSION
        )
        session = CombinedSession(
            id=new_session_id(), user_id=user.user_id, protocol_version=version
        )
        self._sessions[session.id] = session
        while len(self._sessions) > self._maxsize:
            _, evicted = self._sessions.popitem(last=False)
            self._close(evicted)
        result = {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
            "instructions": INSTRUCTIONS,
        }
        await self._result(send, message, result, headers=[(SESSION_HEADER, session.id.encode())])

    def _session(self, headers: dict[bytes, bytes], user: UserContext) -> CombinedSession:
        raw = headers.get(SESSION_HEADER)
        if not raw:
            raise InvalidRequestError("Missing Mcp-Session-Id header: send initialize first")
        session = self._sessions.get(raw.decode("latin-1"))
        now = time.monotonic()
        if session is not None and now - session.last_seen > self._idle:
            self._close(session)
            session = None
        if session is None or session.user_id != user.user_id:
            raise NotFoundError(
                "Session not found or expired: send a new initialize request", resource="session"
            )
        session.last_seen = now
        self._sessions.move_to_end(session.id)
        return session

    def _close(self, session: CombinedSession) -> None:
        self._sessions.pop(session.id, None)
        for gateway_session_id in session.upstreams.values():
            self.gateway.sessions.remove(gateway_session_id)

    def sweep(self) -> None:
        now = time.monotonic()
        for session in [s for s in self._sessions.values() if now - s.last_seen > self._idle]:
            self._close(session)

    # -- tools -----------------------------------------------------------------------------------

    async def _visible_servers(self, user: UserContext) -> list[VisibleServer]:
        """The enabled, relayable servers ``user`` can see, by serverName (cached briefly).

        One query whatever their number; a server's connection and credentials are resolved
        only when a call is routed to it.
        """
        key = (user.user_id, user.role, user.groups)
        visible = self._visible.get(key)
        if visible is None:
            started = self._servers_clock
            cursor = self._servers.find(
                {**server_visibility_filter(user), "status": {"$ne": "inactive"}},
                projection=_VISIBLE_PROJECTION,
            )
            visible = sorted(
                [server async for doc in cursor if (server := _visible_server(doc)) is not None],
                key=lambda server: (server.name, server.id),
            )
            if started == self._servers_clock:
                self._visible[key] = visible
        return visible

    def _servers_changed(self, server_id: str | None) -> None:
        """A server changed (toggle, update, delete): every caller's visible set may differ."""
        self._servers_clock += 1
        self._visible.clear()

    async def routes(self, user: UserContext, *, tool_name: str | None = None) -> dict[str, Route]:
        """Every tool ``user`` may use, by combined name (``{tool}_mcp_{serverName}``).

        Two queries at most (visible servers, then their exposed tools), both cached. With
        ``tool_name`` only the servers that name could belong to are consulted. A name two
        tools would share (``echo_mcp`` on ``delta`` and ``echo`` on ``mcp_delta`` both give
        ``echo_mcp_mcp_delta``) is offered for neither: a call must never reach an upstream
        the caller did not mean.
        """
        servers = await self._visible_servers(user)
        if tool_name is not None:
            servers = [s for s in servers if tool_name.endswith(f"{SEPARATOR}{s.name}")]
        exposed = await self.catalog.exposed_many(server.id for server in servers)
        routes: dict[str, Route] = {}
        collisions: dict[str, list[Route]] = {}
        for server in servers:
            for tool in exposed.get(server.id, {}).values():
                if not tool.allows(user):
                    continue
                name = f"{tool.name}{SEPARATOR}{server.name}"
                route = Route(server=server, tool=tool)
                if name in collisions:
                    collisions[name].append(route)
                elif name in routes:
                    collisions[name] = [routes.pop(name), route]
                else:
                    routes[name] = route
        for name, colliding in collisions.items():
            self._warn_collision(name, colliding)
        return routes

    def _warn_collision(self, name: str, colliding: list[Route]) -> None:
        key = (name, frozenset((route.server.id, route.tool.name) for route in colliding))
        if key in self._collisions_seen:
            return
        self._collisions_seen[key] = True
        log.warning(
            "combined_tool_name_collision",
            name=name,
            tools=[f"{route.server.name}/{route.tool.name}" for route in colliding],
            server_ids=[route.server.id for route in colliding],
        )

    async def _call(
        self,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        message: Message,
        user: UserContext,
        session: CombinedSession,
    ) -> None:
        assert message.tool is not None
        route = (await self.routes(user, tool_name=message.tool)).get(message.tool)
        server = await self._resolve(user, route.server) if route is not None else None
        if route is None or server is None:
            await send_rpc_error(
                send,
                request_id=message.id,
                code=TOOL_NOT_ALLOWED,
                message=f"Tool '{message.tool}' is not available to you",
            )
            return
        body = dict(message.body)
        body["params"] = {**body["params"], "name": route.tool.name}
        raw = json.dumps(body, separators=(",", ":")).encode()
        await self.gateway.watched_exchange(
            receive,
            send,
            user=user,
            server=server,
            message=parse_message(raw),
            body=raw,
            headers={b"accept": headers.get(b"accept", _INIT_ACCEPT[b"accept"])},
            session=None,
            started=time.perf_counter(),
            open_session=lambda: self._upstream_session(session, server, user),
        )

    async def _resolve(self, user: UserContext, visible: VisibleServer) -> ResolvedServer | None:
        """The routed server's connection and credentials (the gateway's cached lookup and its
        ACL, status and transport checks), or None when it is no longer usable or its
        gateway name now leads to another server."""
        try:
            server = await self.gateway.authorize(user, visible.gateway_name)
        except RegistryError:
            return None  # switched off, unrelayable transport, or no longer visible
        return server if server.id == visible.id else None

    async def _upstream_session(
        self, session: CombinedSession, server: ResolvedServer, user: UserContext
    ) -> GatewaySession:
        lock = session.locks.setdefault(server.id, asyncio.Lock())
        async with lock:
            existing_id = session.upstreams.get(server.id)
            if existing_id is not None:
                existing = self.gateway.sessions.get(existing_id)
                if existing is not None:
                    return existing
            opened = await self._open(session, server, user)
            session.upstreams[server.id] = opened.id
            return opened

    async def _open(
        self, session: CombinedSession, server: ResolvedServer, user: UserContext
    ) -> GatewaySession:
        init = {
            "jsonrpc": "2.0",
            "id": f"combined-{ObjectId()}",
            "method": "initialize",
            "params": {
                "protocolVersion": session.protocol_version,
                "capabilities": {},
                "clientInfo": {"name": "mcp-gateway-registry-combined", "version": "0.1.0"},
            },
        }
        raw = json.dumps(init, separators=(",", ":")).encode()
        capture = _Capture()
        outcome = await self.gateway.exchange(
            send=capture,
            headers=_INIT_ACCEPT,
            user=user,
            server=server,
            message=parse_message(raw),
            body=raw,
            session=None,
        )
        session_id = capture.headers.get(SESSION_HEADER)
        opened = self.gateway.sessions.get(session_id.decode()) if session_id else None
        if outcome != "ok" or opened is None:
            raise RpcError(
                UPSTREAM_UNAVAILABLE,
                f"Could not open a session with upstream '{server.name}'",
                outcome="upstream_error",
            )
        notify = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
        await self.gateway.exchange(
            send=_Capture(),
            headers=_INIT_ACCEPT,
            user=user,
            server=server,
            message=parse_message(notify),
            body=notify,
            session=opened,
        )
        return opened

    async def _result(
        self,
        send: Send,
        message: Message,
        result: dict[str, Any],
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        payload = {"jsonrpc": "2.0", "id": message.id, "result": result}
        await send_bytes(
            send,
            status=200,
            body=json.dumps(payload, separators=(",", ":")).encode(),
            headers=headers,
        )
