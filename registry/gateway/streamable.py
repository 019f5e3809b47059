"""One client message to a Streamable HTTP upstream: initialize, or a call in a session."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING

from starlette.types import Send

from registry.auth import UserContext
from registry.gateway.http1 import Http1Error, Response
from registry.gateway.jsonrpc import Message
from registry.gateway.lookup import ResolvedServer
from registry.gateway.metrics import GATEWAY_SESSIONS
from registry.gateway.relay import status_error, translate
from registry.gateway.responses import SESSION_HEADER, send_bytes
from registry.gateway.sessions import GatewaySession, UpstreamSession, new_session_id

if TYPE_CHECKING:
    from registry.gateway.gateway import Gateway

DEFAULT_ACCEPT = "application/json, text/event-stream"


def request_headers(
    upstream_headers: dict[str, str], headers: dict[bytes, bytes]
) -> dict[str, str]:
    """Credential headers plus the MCP headers the client sent (nothing else is forwarded)."""
    out = dict(upstream_headers)
    out["content-type"] = "application/json"
    accept = headers.get(b"accept")
    out["accept"] = accept.decode("latin-1") if accept else DEFAULT_ACCEPT
    version = headers.get(b"mcp-protocol-version")
    if version:
        out["mcp-protocol-version"] = version.decode("latin-1")
    return out


def address_session(out: dict[str, str], upstream: UpstreamSession) -> None:
    """Put the headers that address ``upstream``'s session on ``out``: its id (when the upstream
    gave one) and the protocol version negotiated in it (when known)."""
    if upstream.upstream_session_id is not None:
        out["mcp-session-id"] = upstream.upstream_session_id
    if upstream.protocol_version:
        out["mcp-protocol-version"] = upstream.protocol_version


async def exchange_streamable(
    gw: Gateway,
    *,
    send: Send,
    headers: dict[bytes, bytes],
    user: UserContext,
    server: ResolvedServer,
    message: Message,
    body: bytes,
    session: GatewaySession | None,
    upstream_headers: dict[str, str],
    user_key: str | None,
) -> str:
    out = request_headers(upstream_headers, headers)
    if session is None:
        return await _initialize(
            gw,
            send=send,
            user=user,
            server=server,
            message=message,
            body=body,
            out=out,
            user_key=user_key,
        )
    upstream = session.upstream
    if "mcp-protocol-version" in out:
        # The version the client sends wins, and is what a re-initialise replays.
        upstream.protocol_version = out["mcp-protocol-version"]
    address_session(out, upstream)
    seen = upstream.generation
    response = await gw.relay.post(server, out, body)
    try:
        if response.status == 404 and upstream.upstream_session_id is not None:
            # The upstream expired (or lost, by restarting) its session: re-initialise once.
            await _discard(response)
            await gw.relay.reinitialize(server, upstream, out, seen)
            out.pop("mcp-session-id", None)
            if upstream.upstream_session_id is not None:
                out["mcp-session-id"] = upstream.upstream_session_id
            response = await gw.relay.post(server, out, body)
        if response.status >= 300:
            return await _refused(gw, send, response, server, user_key)
        tools_filter = gw.tools_filter(user, server) if message.method == "tools/list" else None
        failure = await gw.relay.stream_back(
            response=response,
            server=server,
            message=message,
            send=send,
            extra_headers=[],
            tools_filter=tools_filter,
        )
    finally:
        response.release()
    if failure is not None:
        gw.account_failure(failure, server, user)
        return failure.outcome
    gw.events.succeeded(server, user_id=user_key)
    return "ok"


async def _initialize(
    gw: Gateway,
    *,
    send: Send,
    user: UserContext,
    server: ResolvedServer,
    message: Message,
    body: bytes,
    out: dict[str, str],
    user_key: str | None,
) -> str:
    gw.events.connecting(server, user_id=user_key)
    response = await gw.relay.post(server, out, body)
    session: GatewaySession | None = None
    try:
        if response.status >= 300:
            return await _refused(gw, send, response, server, user_key)
        params = message.body.get("params")
        requested = params.get("protocolVersion") if isinstance(params, dict) else None
        session = GatewaySession(
            id=new_session_id(),
            user_id=user.user_id,
            server_id=server.id,
            server_name=server.name,
            user=user,
            route=server.gateway_name,
            upstream=UpstreamSession(
                server_id=server.id,
                initialize=body,
                upstream_session_id=response.headers.get("mcp-session-id"),
                protocol_version=requested if isinstance(requested, str) else None,
            ),
        )
        gw.sessions.add(session)
        failure = await gw.relay.stream_back(
            response=response,
            server=server,
            message=message,
            send=send,
            extra_headers=[(SESSION_HEADER, session.id.encode())],
            tools_filter=None,
        )
    except BaseException:
        if session is not None:
            gw.sessions.remove(session.id)
        raise
    finally:
        response.release()
    if failure is not None:
        gw.sessions.remove(session.id)
        gw.account_failure(failure, server, user)
        GATEWAY_SESSIONS.labels(server.name, "failed").inc()
        return failure.outcome
    gw.events.succeeded(server, user_id=user_key, connect=True)
    GATEWAY_SESSIONS.labels(server.name, "opened").inc()
    return "ok"


async def _refused(
    gw: Gateway,
    send: Send,
    response: Response,
    server: ResolvedServer,
    user_key: str | None,
) -> str:
    """A non-2xx upstream answer: credential and server failures become JSON-RPC errors;
    other client errors (400 with a JSON-RPC error, 405, 406, ...) pass through as they are."""
    status = response.status
    if status in (401, 403) or status >= 500 or status == 404:
        await _discard(response)
        raise status_error(status, server.name, user_credential=user_key is not None)
    try:
        body = await response.read()
    except (Http1Error, TimeoutError) as exc:
        raise translate(exc, server) from exc
    content_type = response.headers.get("content-type", "application/json").encode()
    if content_type.startswith(b"application/json"):
        try:
            json.loads(body)
        except ValueError:
            body = b""
    await send_bytes(send, status=status, body=body, content_type=content_type)
    return "upstream_refused"


async def _discard(response: Response) -> None:
    # A body that fails to arrive does not matter here; release() then closes the connection.
    with contextlib.suppress(Http1Error, TimeoutError):
        await response.read()
    response.release()
