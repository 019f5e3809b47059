"""The per-call path of ``/mcp/{server}``: caller → server → session → credential → policy → relay.

``Gateway.handle`` is an ASGI handler for one server's endpoint. Every step before the MCP
exchange is a cache lookup in the steady state (token, server, session, credential); failures
there are HTTP errors in the API's shape. Failures during the exchange are JSON-RPC errors
for that one client. See docs/gateway.md.
"""

from __future__ import annotations

import asyncio
import time
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
from registry.gateway import policy
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
        self.streams = StreamRelay(
            relay=relay, sessions=sessions, on_tools_changed=self.tools_changed
        )

    # -- entry -----------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        headers = dict(scope["headers"])
        policy.bind(self.tool_policy)
        try:
            user = self.principals.authenticate(headers.get(b"authorization"))
            server = await self.authorize(user, name)
            method = scope["method"]
            if method == "POST":
                await self.post(scope, receive, send, headers, user, server)
            elif method in ("GET", "DELETE"):
                session = self.session_for(headers, user, server)
                upstream_headers = await self._stream_headers(server, user)
                if method == "GET":
                    await self.streams.get(
                        scope, receive, send, headers, session, server, upstream_headers
                    )
                else:
                    await self.streams.delete(send, session, server, upstream_headers)
            else:
                await send_bytes(
                    send,
                    status=405,
                    body=b'{"error":"method_not_allowed","message":"Use POST, GET or DELETE"}',
                    headers=[(b"allow", b"GET, POST, DELETE")],
                )
        except RegistryError as exc:
            request_id = scope.get("state", {}).get("request_id")
            await send_api_error(
                send, status=_status(exc), code=exc.code, message=exc.message, request_id=request_id
            )

    async def authorize(self, user: UserContext, name: str) -> ResolvedServer:
        """The server ``name`` resolves to, if ``user`` may use it now; HTTP-level errors."""
        server = await self.lookup.resolve(name)
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
        raw = headers.get(SESSION_HEADER)
        if not raw:
            raise InvalidRequestError("Missing Mcp-Session-Id header: send initialize first")
        session = self.sessions.get(raw.decode("latin-1"))
        if session is None or session.user_id != user.user_id or session.server_id != server.id:
            raise NotFoundError(SESSION_NOT_FOUND, resource="session")
        return session

    # -- POST: one JSON-RPC message ------------------------------------------------------------

    async def post(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        user: UserContext,
        server: ResolvedServer,
    ) -> None:
        body = await _read_body(receive)
        try:
            message = parse_message(body)
        except RpcError as exc:
            await send_rpc_error(
                send, request_id=None, code=exc.code, message=exc.message, status=400
            )
            return
        session: GatewaySession | None = None
        if message.method != "initialize":
            session = self.session_for(headers, user, server)
        started = time.perf_counter()
        outcome = "ok"
        watch = DisconnectWatch(receive, send) if message.is_request else None
        if watch is not None:
            send = watch.send
        try:
            try:
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
        finally:
            if watch is not None:
                watch.stop()
            self._observe(user, server, message, outcome, started)

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
        elapsed = time.perf_counter() - started
        method = message.method if message.method is not None else "response"
        method_label = method if method in KNOWN_METHODS else "_other"
        tool = message.tool
        tool_label = "" if tool is None else (tool if tool in server.known_tools else "_other")
        GATEWAY_CALLS.labels(server.name, method_label, tool_label, outcome).inc()
        GATEWAY_CALL_SECONDS.labels(server.name, method_label, tool_label).observe(elapsed)
        log.info(
            "gateway_call",
            user_id=user.user_id,
            server=server.name,
            method=method,
            tool=tool,
            outcome=outcome,
            duration_ms=round(elapsed * 1000, 2),
        )


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
