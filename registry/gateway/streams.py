"""GET on a gateway session: the server→client event stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiohttp
from starlette.types import Receive, Scope, Send

from registry.errors import ConflictError, UpstreamError
from registry.gateway.jsonrpc import sse_event
from registry.gateway.lookup import ResolvedServer
from registry.gateway.policy import ListChangedScanner
from registry.gateway.relay import Relay
from registry.gateway.responses import EVENT_STREAM, StreamWriter, send_bytes
from registry.gateway.sessions import GatewaySession
from registry.gateway.watch import DisconnectWatch

KEEPALIVE_SECONDS = 15.0
_FORWARDED = (b"accept", b"mcp-protocol-version", b"last-event-id")


class StreamRelay:
    def __init__(
        self,
        *,
        relay: Relay,
        on_tools_changed: Callable[[ResolvedServer], None] | None = None,
    ) -> None:
        self.relay = relay
        self.on_tools_changed = on_tools_changed

    async def get(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        session: GatewaySession,
        server: ResolvedServer,
        upstream_headers: dict[str, str],
    ) -> str:
        """Open the client's event stream: the upstream's GET stream, or the bridge's outbox.

        Returns the outcome once the stream ended: ``ok`` (either side closed it), or
        ``upstream_refused`` when the upstream offers no stream (its 404/405 is passed on).
        """
        if session.client_streams > 0 and server.transport == "sse":
            raise ConflictError("Only one event stream per session is allowed")
        watch = DisconnectWatch(receive, send, grace_seconds=0)
        session.client_streams += 1
        outcome = "ok"
        try:
            if server.transport == "sse":
                await self._outbox(watch.send, session)
            else:
                outcome = await self._upstream_get(
                    watch.send, headers, session, server, upstream_headers
                )
        except asyncio.CancelledError:
            if not watch.fired:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # always in a task
        finally:
            session.client_streams -= 1
            watch.stop()
        return outcome

    async def _outbox(self, send: Send, session: GatewaySession) -> None:
        outbox = session.upstream.outbox
        assert outbox is not None
        writer = StreamWriter(send)
        await writer.start(status=200, content_type=EVENT_STREAM, headers=[])
        while True:
            try:
                data = await asyncio.wait_for(outbox.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await writer.chunk(b": keepalive\n\n")
                continue
            await writer.chunk(sse_event(data))

    async def _upstream_get(
        self,
        send: Send,
        headers: dict[bytes, bytes],
        session: GatewaySession,
        server: ResolvedServer,
        upstream_headers: dict[str, str],
    ) -> str:
        assert self.relay.streams is not None
        out = dict(upstream_headers)
        for name in _FORWARDED:
            value = headers.get(name)
            if value:
                out[name.decode()] = value.decode("latin-1")
        out.setdefault("accept", "text/event-stream")
        upstream = session.upstream
        if upstream.upstream_session_id is not None:
            out["mcp-session-id"] = upstream.upstream_session_id
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=server.timeout_seconds, sock_read=None
        )
        try:
            response = await self.relay.streams.get(server.url, headers=out, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(
                f"Could not open the event stream of upstream '{server.name}'"
            ) from exc
        try:
            if response.status != 200:
                # 405: the upstream offers no stream (the spec allows that); pass it on.
                if response.status in (404, 405):
                    await send_bytes(send, status=response.status, body=b"")
                    return "upstream_refused"
                await send_bytes(send, status=502, body=b"")
                return "upstream_error"
            writer = StreamWriter(send)
            await writer.start(
                status=200,
                content_type=response.headers.get("content-type", "").encode(),
                headers=[],
            )
            scanner = ListChangedScanner()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async for chunk in response.content.iter_any():
                    if scanner.feed(chunk) and self.on_tools_changed is not None:
                        self.on_tools_changed(server)
                    await writer.chunk(chunk)
            await writer.end()
        finally:
            response.release()
        return "ok"
