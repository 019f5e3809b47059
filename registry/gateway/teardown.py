"""Telling an upstream that the client no longer wants something: a request, or a session.

The MCP specification is explicit that a closed connection is not a cancellation, so a client
that goes away leaves the upstream working unless it is told: ``cancel_request`` sends
``notifications/cancelled`` for the request in the same upstream session (the session id for
Streamable HTTP, the bridge for a legacy SSE upstream). ``end_session`` sends ``DELETE`` for a
gateway session that ended here (the client's DELETE, idle expiry, eviction), so the upstream
frees it instead of keeping it until its own timeout.

Both run in the background, off the client's response, bounded by the server's timeout, and
are best effort: a failure is logged, never raised. They contact the upstream only if the user
may still use the server and a credential for the call is available, exactly as a call would.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import structlog

from registry.auth import UserContext
from registry.errors import RegistryError
from registry.gateway.http1 import Http1Error
from registry.gateway.jsonrpc import RpcError
from registry.gateway.lookup import ResolvedServer
from registry.gateway.metrics import GATEWAY_SESSIONS
from registry.gateway.sessions import GatewaySession
from registry.gateway.streamable import address_session, request_headers

if TYPE_CHECKING:
    from registry.gateway.gateway import Gateway

log = structlog.get_logger("registry.gateway")

CANCEL_REASON = "client disconnected"


def cancelled_notification(request_id: Any) -> bytes:
    """``notifications/cancelled`` for ``request_id`` (MCP "Cancellation")."""
    message = {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": request_id, "reason": CANCEL_REASON},
    }
    return json.dumps(message, separators=(",", ":")).encode()


async def cancel_request(
    gw: Gateway,
    *,
    server: ResolvedServer,
    user: UserContext,
    session: GatewaySession,
    request_id: Any,
) -> None:
    """Cancel ``request_id`` upstream: its client disconnected while it was in flight."""
    body = cancelled_notification(request_id)
    upstream = session.upstream
    try:
        async with asyncio.timeout(server.timeout_seconds):
            if server.transport == "sse":
                bridge = upstream.bridge
                if bridge is None or bridge.closed:
                    return  # the upstream's stream is gone, and the request with it
                await bridge.send(body)
            else:
                headers = request_headers(await gw.credentials.headers_for(server, user), {})
                address_session(headers, upstream)
                response = await gw.relay.post(server, headers, body)
                try:
                    await response.read()
                finally:
                    response.release()
    except (RpcError, Http1Error, TimeoutError) as exc:
        log.info("upstream_cancel_failed", server=server.name, reason=_reason(exc))
        return
    log.info("upstream_request_cancelled", server=server.name, user_id=user.user_id)


async def end_session(gw: Gateway, session: GatewaySession) -> None:
    """``DELETE`` the upstream session behind a gateway session that ended here.

    Counted in ``mcp_gateway_sessions_total`` as ``upstream_ended`` (the upstream answered),
    ``upstream_end_skipped`` (not allowed or no credential: the upstream was not contacted) or
    ``upstream_end_failed``.
    """
    user, upstream = session.user, session.upstream
    upstream_id = upstream.upstream_session_id
    if user is None or upstream_id is None:
        return
    outcome = "upstream_end_skipped"
    reason = ""
    try:
        server = await gw.authorize(user, session.route or session.server_name)
        if server.id != session.server_id or server.transport != "streamable-http":
            reason = "server_changed"
            return
        credential = await gw.credentials.headers_for(server, user)
        outcome = "upstream_end_failed"
        async with asyncio.timeout(server.timeout_seconds):
            headers = dict(credential)
            address_session(headers, upstream)
            response = await gw.relay.request("DELETE", server, headers)
            try:
                await response.read()
            finally:
                response.release()
        outcome = "upstream_ended"
    except RegistryError as exc:
        # Switched off, deleted or no longer visible to this user: not ours to contact.
        reason = exc.code
    except (RpcError, Http1Error, TimeoutError) as exc:
        reason = _reason(exc)
    finally:
        GATEWAY_SESSIONS.labels(session.server_name, outcome).inc()
        log.info(
            "upstream_session_end",
            server=session.server_name,
            user_id=user.user_id,
            outcome=outcome,
            reason=reason or None,
        )


def _reason(exc: BaseException) -> str:
    return exc.outcome if isinstance(exc, RpcError) else type(exc).__name__
