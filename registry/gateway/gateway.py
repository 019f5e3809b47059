"""The per-call path of ``/mcp/{server}``: caller → server → session → credential → policy → relay.

``Gateway.handle`` is an ASGI handler for one server's endpoint. Every step before the MCP
exchange is a cache lookup in the steady state (token, server, session, credential); failures
there are HTTP errors in the API's shape. Failures during the exchange are JSON-RPC errors
for that one client. See docs/gateway.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
from starlette.types import Receive, Scope, Send

from registry.auth import Action, UserContext, authorize_server
from registry.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RegistryError,
    UpstreamError,
)
from registry.gateway import policy, teardown
from registry.gateway.background import BackgroundTasks
from registry.gateway.bridged import exchange_bridged
from registry.gateway.credentials import CredentialResolver
from registry.gateway.events import ServerEvents
from registry.gateway.jsonrpc import TOOL_NOT_ALLOWED, Message, RpcError, parse_message
from registry.gateway.lookup import ResolvedServer, ServerLookup
from registry.gateway.metrics import GATEWAY_CALL_SECONDS, GATEWAY_CALLS, KNOWN_METHODS
from registry.gateway.principals import PrincipalCache
from registry.gateway.relay import Relay
from registry.gateway.responses import SESSION_HEADER, send_api_error, send_bytes, send_rpc_error
from registry.gateway.sessions import GatewaySession, SessionStore
from registry.gateway.streamable import exchange_streamable
from registry.gateway.streams import StreamRelay
from registry.gateway.watch import DisconnectWatch

log = structlog.get_logger("registry.gateway")

MAX_BODY_BYTES = 4 * 1024 * 1024
BACKGROUND_GRACE_SECONDS = 1.0
UNKNOWN_SERVER = "_unknown"
SESSION_NOT_FOUND = "Session not found or expired: send a new initialize request"
# Outcomes that say something about the upstream (counted towards status: error); the rest
# are about the caller (missing credential, policy) or about this one exchange.
SERVER_FAILURES = frozenset(
    {"upstream_down", "timeout", "upstream_error", "upstream_dropped", "invalid_response"}
)


class Gateway:
    def __init__(
        self,
        *,
        principals: PrincipalCache,
        lookup: ServerLookup,
        credentials: CredentialResolver,
        sessions: SessionStore,
        events: ServerEvents,
        relay: Relay,
        tool_policy: policy.ToolPolicy | None = None,
    ) -> None:
        self.principals = principals
        self.lookup = lookup
        self.credentials = credentials
        self.sessions = sessions
        self.events = events
        self.relay = relay
        self.tool_policy = tool_policy
        """The tool catalog's rules (docs/catalog.md); None relays every tool."""
        relay.on_tools_changed = self.tools_changed
        self.streams = StreamRelay(relay=relay, on_tools_changed=self.tools_changed)
        sessions.on_close = self.session_closed
        self.closing = False
        self._background = BackgroundTasks(kind="gateway")

    # -- entry -----------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        policy.bind(self.tool_policy)
        method: str = scope["method"]
        user: UserContext | None = None
        server: ResolvedServer | None = None
        message: Message | None = None
        try:
            user = self.principals.authenticate(headers.get(b"authorization"))
            if method == "DELETE":
                ended = await self.end_session(headers, user, name)
                await send_bytes(send, status=200, body=b"")
                self._record(
                    user_id=user.user_id,
                    server_name=ended.server_name,
                    server=None,
                    method=method,
                    tool=None,
                    outcome="ok",
                    started=started,
                    server_label=ended.server_name,
                )
                return
            server = await self.lookup.resolve(name)  # named in the log even if refused
            usable = self.check_use(user, server)
            if method == "POST":
                body = await _read_body(receive)
                try:
                    message = parse_message(body)
                except RpcError as exc:
                    await send_rpc_error(
                        send, request_id=None, code=exc.code, message=exc.message, status=400
                    )
                    self._record_served(user, usable, method, exc.outcome, started)
                    return
                session = None
                if message.method != "initialize":
                    session = self.session_for(headers, user, usable)
                await self.watched_exchange(
                    receive,
                    send,
                    user=user,
                    server=usable,
                    message=message,
                    body=body,
                    headers=headers,
                    session=session,
                    started=started,
                )
            elif method == "GET":
                session = self.session_for(headers, user, usable)
                upstream_headers = await self._stream_headers(usable, user)
                outcome = await self.streams.get(
                    scope, receive, send, headers, session, usable, upstream_headers
                )
                self._record_served(user, usable, method, outcome, started)
            else:
                await send_bytes(
                    send,
                    status=405,
                    body=b'{"error":"method_not_allowed","message":"Use POST, GET or DELETE"}',
                    headers=[(b"allow", b"GET, POST, DELETE")],
                )
                self._record_served(user, usable, method, "method_not_allowed", started)
        except RegistryError as exc:
            request_id = scope.get("state", {}).get("request_id")
            await send_api_error(
                send, status=_status(exc), code=exc.code, message=exc.message, request_id=request_id
            )
            if message is not None:
                method = message.method if message.method is not None else "response"
            self._record(
                user_id=user.user_id if user is not None else None,
                server_name=server.name if server is not None else name,
                server=server,
                method=method,
                tool=message.tool if message is not None else None,
                outcome=_rejection(exc),
                started=started,
            )

    async def authorize(self, user: UserContext, name: str) -> ResolvedServer:
        """The server ``name`` resolves to, if ``user`` may use it now; HTTP-level errors."""
        return self.check_use(user, await self.lookup.resolve(name))

    def check_use(self, user: UserContext, server: ResolvedServer | None) -> ResolvedServer:
        """``server`` if ``user`` may use it now, else the HTTP-level error that says why."""
        if server is None:
            raise NotFoundError("Server not found", resource="server")
        authorize_server(user, Action.USE, server)
        if server.status == "inactive":
            raise PermissionDeniedError(
                f"Server '{server.name}' is switched off (status inactive); an admin must "
                "enable it before it can be used",
                resource="server",
            )
        if server.transport is None:
            raise InvalidRequestError(
                f"Server '{server.name}' uses a transport the gateway cannot relay; only "
                "streamable-http and sse servers are reachable through /mcp",
                resource="server",
            )
        return server

    async def _stream_headers(self, server: ResolvedServer, user: UserContext) -> dict[str, str]:
        try:
            return await self.credentials.headers_for(server, user)
        except RpcError as exc:
            raise PermissionDeniedError(exc.message, resource="server") from exc

    def session_for(
        self, headers: dict[bytes, bytes], user: UserContext, server: ResolvedServer
    ) -> GatewaySession:
        session = self._owned_session(headers, user)
        if session.server_id != server.id:
            raise NotFoundError(SESSION_NOT_FOUND, resource="session")
        return session

    def _owned_session(self, headers: dict[bytes, bytes], user: UserContext) -> GatewaySession:
        raw = headers.get(SESSION_HEADER)
        if not raw:
            raise InvalidRequestError("Missing Mcp-Session-Id header: send initialize first")
        session = self.sessions.get(raw.decode("latin-1"))
        if session is None or session.user_id != user.user_id:
            raise NotFoundError(SESSION_NOT_FOUND, resource="session")
        return session

    # -- DELETE: the end of a session ---------------------------------------------------------

    async def end_session(
        self, headers: dict[bytes, bytes], user: UserContext, name: str
    ) -> GatewaySession:
        """End the caller's own session on ``/mcp/{name}`` here; the upstream's in the background.

        Only the session's owner may end it, and always may: a server switched off since, no
        longer visible, or a credential deleted since does not keep a session alive (the
        upstream is then not contacted, see ``teardown.end_session``).
        """
        session = self._owned_session(headers, user)
        if name not in (session.route, session.server_name):
            server = await self.lookup.resolve(name)
            if server is None or server.id != session.server_id:
                raise NotFoundError(SESSION_NOT_FOUND, resource="session")
        self.sessions.remove(session.id)
        return session

    def session_closed(self, session: GatewaySession) -> None:
        """A gateway session ended here (DELETE, idle expiry, eviction): release the upstream's."""
        bridge = session.upstream.bridge
        if bridge is not None:
            bridge.close()
        if not self.closing and session.upstream.upstream_session_id is not None:
            self.spawn(teardown.end_session(self, session))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background (kept referenced; cancelled at shutdown)."""
        self._background.spawn(work)

    async def close(self) -> None:
        """Shutdown: forget every session (the upstream ones are left to expire), then give
        pending background work a moment before cancelling it."""
        self.closing = True
        self.sessions.clear()
        await self._background.drain(grace_seconds=BACKGROUND_GRACE_SECONDS)

    # -- POST: one JSON-RPC message ------------------------------------------------------------

    async def watched_exchange(
        self,
        receive: Receive,
        send: Send,
        *,
        user: UserContext,
        server: ResolvedServer,
        message: Message,
        body: bytes,
        headers: dict[bytes, bytes],
        session: GatewaySession | None,
        started: float,
        open_session: Callable[[], Awaitable[GatewaySession]] | None = None,
    ) -> None:
        """Relay one client message (``exchange``) and answer it, recorded as one call.

        A request runs under a ``DisconnectWatch``: a client that goes away cancels it here and
        upstream (``client_gone``). A failure is answered as a JSON-RPC error (HTTP 502 for a
        message without id, which has no response to carry it) and counted against the server.
        ``open_session``, when given, supplies the upstream session inside the watch (the
        combined endpoint opens one lazily per server), instead of ``session``.
        """
        outcome = "ok"
        watch = DisconnectWatch(receive, send) if message.is_request else None
        if watch is not None:
            send = watch.send
        try:
            try:
                if open_session is not None:
                    session = await open_session()
                outcome = await self.exchange(
                    send=send,
                    headers=headers,
                    user=user,
                    server=server,
                    message=message,
                    body=body,
                    session=session,
                )
            except RpcError as exc:
                outcome = exc.outcome
                self.account_failure(exc, server, user)
                if not message.has_id:
                    await send_rpc_error(
                        send, request_id=None, code=exc.code, message=exc.message, status=502
                    )
                else:
                    await send_rpc_error(
                        send, request_id=message.id, code=exc.code, message=exc.message
                    )
        except asyncio.CancelledError:
            if watch is None or not watch.fired:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # always in a task
            outcome = "client_disconnected"
            self.client_gone(server=server, user=user, session=session, message=message)
        finally:
            if watch is not None:
                watch.stop()
            self._observe(user, server, message, outcome, started)

    def client_gone(
        self,
        *,
        server: ResolvedServer,
        user: UserContext,
        session: GatewaySession | None,
        message: Message,
    ) -> None:
        """The client disconnected while ``message`` was in flight: cancel it upstream.

        A disconnect is not a cancellation in MCP, so the upstream is told (in the background).
        ``initialize`` has no upstream session to cancel in and must not be cancelled anyway.
        """
        if session is not None and message.is_request:
            self.spawn(
                teardown.cancel_request(
                    self, server=server, user=user, session=session, request_id=message.id
                )
            )

    async def exchange(
        self,
        *,
        send: Send,
        headers: dict[bytes, bytes],
        user: UserContext,
        server: ResolvedServer,
        message: Message,
        body: bytes,
        session: GatewaySession | None,
    ) -> str:
        """Relay one message (resolve credentials → policy → relay); returns the outcome.

        Reusable by a combined endpoint: it needs only the resolved server, the caller and
        (except for ``initialize``) the upstream session to use.
        """
        upstream_headers = await self.credentials.headers_for(server, user)
        if message.tool is not None:
            denial = await policy.tool_denial(user=user, server=server, tool=message.tool)
            if denial is not None:
                raise RpcError(TOOL_NOT_ALLOWED, denial, outcome="denied")
            params = message.body.get("params")
            await policy.check_arguments(
                user=user,
                server=server,
                tool=message.tool,
                arguments=params.get("arguments") if isinstance(params, dict) else None,
            )
        user_key = user.user_id if server.credential_mode == "user" else None
        if server.transport == "sse":
            return await exchange_bridged(
                self,
                send=send,
                user=user,
                server=server,
                message=message,
                body=body,
                session=session,
                upstream_headers=upstream_headers,
                user_key=user_key,
            )
        return await exchange_streamable(
            self,
            send=send,
            headers=headers,
            user=user,
            server=server,
            message=message,
            body=body,
            session=session,
            upstream_headers=upstream_headers,
            user_key=user_key,
        )

    def tools_changed(self, server: ResolvedServer) -> None:
        """The upstream sent ``notifications/tools/list_changed``: re-sync its catalog soon."""
        if self.tool_policy is not None:
            self.tool_policy.tools_changed(server, reason=policy.LIST_CHANGED_REASON)

    def tools_filter(self, user: UserContext, server: ResolvedServer) -> Any:
        async def apply(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return await policy.filter_tools(user=user, server=server, tools=tools)

        return apply

    # -- accounting ------------------------------------------------------------------------------

    def account_failure(self, exc: RpcError, server: ResolvedServer, user: UserContext) -> None:
        user_key = user.user_id if server.credential_mode == "user" else None
        if exc.outcome in SERVER_FAILURES:
            self.events.failed(server, user_id=user_key, message=exc.message)
        elif exc.outcome == "credential_rejected":
            if user_key is not None:
                self.credentials.forget_user(user.user_id, server.id)
            # An app key the upstream refuses is a server problem; a user's own key is not.
            self.events.failed(
                server, user_id=user_key, message=exc.message, persist=user_key is None
            )

    def _observe(
        self,
        user: UserContext,
        server: ResolvedServer,
        message: Message,
        outcome: str,
        started: float,
    ) -> None:
        self._record(
            user_id=user.user_id,
            server_name=server.name,
            server=server,
            method=message.method if message.method is not None else "response",
            tool=message.tool,
            outcome=outcome,
            started=started,
        )

    def _record_served(
        self, user: UserContext, server: ResolvedServer, method: str, outcome: str, started: float
    ) -> None:
        """``_record`` for a request answered without a tool call on a server it may use."""
        self._record(
            user_id=user.user_id,
            server_name=server.name,
            server=server,
            method=method,
            tool=None,
            outcome=outcome,
            started=started,
        )

    def _record(
        self,
        *,
        user_id: str | None,
        server_name: str,
        server: ResolvedServer | None,
        method: str,
        tool: str | None,
        outcome: str,
        started: float,
        server_label: str = UNKNOWN_SERVER,
    ) -> None:
        """The canonical ``gateway_call`` line and metrics of one request to the gateway.

        ``server`` is None when the name did not resolve to a server: the log names what was
        asked for, the metrics say ``server_label`` (their labels stay bounded).
        """
        elapsed = time.perf_counter() - started
        method_label = method if method in KNOWN_METHODS else "_other"
        if tool is None:
            tool_label = ""
        else:
            tool_label = tool if server is not None and tool in server.known_tools else "_other"
        if server is not None:
            server_label = server.name
        GATEWAY_CALLS.labels(server_label, method_label, tool_label, outcome).inc()
        GATEWAY_CALL_SECONDS.labels(server_label, method_label, tool_label).observe(elapsed)
        log.info(
            "gateway_call",
            user_id=user_id,
            server=server_name,
            method=method,
            tool=tool,
            outcome=outcome,
            duration_ms=round(elapsed * 1000, 2),
        )


def _rejection(exc: RegistryError) -> str:
    """The outcome label of a request refused before the MCP exchange (see docs/gateway.md)."""
    if isinstance(exc, NotFoundError) and exc.resource == "session":
        return "session_not_found"
    if isinstance(exc, TooLargeError):
        return "too_large"
    return exc.code


def _status(exc: RegistryError) -> int:
    if isinstance(exc, TooLargeError):
        return 413
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


_STATUS: tuple[tuple[type[RegistryError], int], ...] = (
    (AuthenticationError, 401),
    (ConflictError, 409),
    (UpstreamError, 502),
    (NotFoundError, 404),
    (PermissionDeniedError, 403),
    (InvalidRequestError, 400),
)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TooLargeError()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class TooLargeError(InvalidRequestError):
    code = "payload_too_large"

    def __init__(self) -> None:
        super().__init__(f"Request body larger than {MAX_BODY_BYTES} bytes")
