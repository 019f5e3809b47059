"""One client message to a legacy HTTP+SSE upstream, through the session's ``SseBridge``."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from starlette.types import Send

from registry.auth import UserContext
from registry.gateway.jsonrpc import Message
from registry.gateway.lookup import ResolvedServer
from registry.gateway.metrics import GATEWAY_SESSIONS
from registry.gateway.relay import INITIALIZED, checked_json
from registry.gateway.responses import SESSION_HEADER, send_bytes
from registry.gateway.sessions import GatewaySession, UpstreamSession, new_session_id
from registry.gateway.sse_bridge import OUTBOX_SIZE, SessionGoneError, SseBridge

if TYPE_CHECKING:
    from registry.gateway.gateway import Gateway


async def exchange_bridged(
    gw: Gateway,
    *,
    send: Send,
    user: UserContext,
    server: ResolvedServer,
    message: Message,
    body: bytes,
    session: GatewaySession | None,
    upstream_headers: dict[str, str],
    user_key: str | None,
) -> str:
    if session is None:
        return await _initialize(
            gw,
            send=send,
            user=user,
            server=server,
            message=message,
            body=body,
            upstream_headers=upstream_headers,
            user_key=user_key,
        )
    upstream = session.upstream
    for attempt in (1, 2):
        bridge = await live_bridge(gw, server, upstream, upstream_headers)
        try:
            if message.is_request:
                data = await bridge.request(message.id, body)
            else:
                await bridge.send(body)
                data = None
            break
        except SessionGoneError:
            if attempt == 2:
                raise
    if data is None:
        await send_bytes(send, status=202, body=b"")
    else:
        if message.method == "tools/list":
            data = await checked_json(data, server, gw.tools_filter(user, server))
        await send_bytes(send, status=200, body=data)
    gw.events.succeeded(server, user_id=user_key)
    return "ok"


def open_bridge(
    gw: Gateway, server: ResolvedServer, upstream: UpstreamSession, upstream_headers: dict[str, str]
) -> SseBridge:
    assert gw.relay.streams is not None and upstream.outbox is not None
    return SseBridge(
        http=gw.relay.streams,
        url=server.url,
        headers=upstream_headers,
        timeout_seconds=server.timeout_seconds,
        server_name=server.name,
        outbox=upstream.outbox,
        on_tools_changed=lambda: gw.tools_changed(server),
        user_credential=server.credential_mode == "user",
    )


async def live_bridge(
    gw: Gateway, server: ResolvedServer, upstream: UpstreamSession, upstream_headers: dict[str, str]
) -> SseBridge:
    """The session's open bridge, or a new one re-initialised with the client's initialize."""
    bridge = upstream.bridge
    if bridge is not None and not bridge.closed:
        return bridge
    async with upstream.lock:
        bridge = upstream.bridge
        if bridge is not None and not bridge.closed:
            return bridge
        bridge = open_bridge(gw, server, upstream, upstream_headers)
        try:
            await bridge.start()
            await bridge.request(json.loads(upstream.initialize).get("id"), upstream.initialize)
            await bridge.send(INITIALIZED)
        except BaseException:
            bridge.close()
            raise
        upstream.bridge = bridge
        upstream.generation += 1
        return bridge


async def _initialize(
    gw: Gateway,
    *,
    send: Send,
    user: UserContext,
    server: ResolvedServer,
    message: Message,
    body: bytes,
    upstream_headers: dict[str, str],
    user_key: str | None,
) -> str:
    gw.events.connecting(server, user_id=user_key)
    upstream = UpstreamSession(
        server_id=server.id, initialize=body, outbox=asyncio.Queue(maxsize=OUTBOX_SIZE)
    )
    bridge = open_bridge(gw, server, upstream, upstream_headers)
    try:
        await bridge.start()
        data = await bridge.request(message.id, body)
    except BaseException:
        bridge.close()
        GATEWAY_SESSIONS.labels(server.name, "failed").inc()
        raise
    upstream.bridge = bridge
    session = GatewaySession(
        id=new_session_id(),
        user_id=user.user_id,
        server_id=server.id,
        server_name=server.name,
        upstream=upstream,
        user=user,
        route=server.gateway_name,
    )
    gw.sessions.add(session)
    await send_bytes(send, status=200, body=data, headers=[(SESSION_HEADER, session.id.encode())])
    gw.events.succeeded(server, user_id=user_key, connect=True)
    GATEWAY_SESSIONS.labels(server.name, "opened").inc()
    return "ok"
