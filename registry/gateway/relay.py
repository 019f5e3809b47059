"""Relaying MCP messages to Streamable HTTP upstreams over pooled keep-alive connections.

The client's body goes upstream byte for byte; the upstream's answer streams back as it
arrives (JSON or server-sent events) without being rebuilt. Server-sent events are released
whole events at a time, each checked to be JSON-RPC, and the stream must carry the response
to the request (``registry.gateway.framing``). Two exceptions: ``tools/list`` results are
parsed, passed through the policy and re-serialized, and small JSON answers are read whole
(one chunk anyway) so garbage is caught before the client sees a status.

Failures before the client's response starts are raised as RpcError; failures after it started
(the upstream hangs or drops mid-stream) end the stream with a JSON-RPC error event and are
returned, so the caller can count them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from starlette.types import Send

from registry.gateway.framing import HOLD_LIMIT, AnswerFramer, InvalidEventError
from registry.gateway.http1 import (
    Http1Error,
    Http1Pool,
    Response,
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamHttpError,
)
from registry.gateway.jsonrpc import (
    CONNECTION_CLOSED,
    CREDENTIAL_REJECTED,
    REQUEST_TIMEOUT,
    UPSTREAM_INVALID_RESPONSE,
    UPSTREAM_UNAVAILABLE,
    Message,
    RpcError,
    id_key,
    is_jsonrpc,
    response_key,
    sse_event,
)
from registry.gateway.lookup import ResolvedServer
from registry.gateway.responses import EVENT_STREAM, JSON, StreamWriter, send_bytes
from registry.gateway.sessions import UpstreamSession
from registry.gateway.sse import SseParser
from registry.gateway.upstream import display_url

BUFFERED_JSON_LIMIT = HOLD_LIMIT
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
ToolsFilter = Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


def translate(exc: BaseException, server: ResolvedServer) -> RpcError:
    """The client-facing error for a transport failure (no upstream text, no headers)."""
    if isinstance(exc, TimeoutError):
        return RpcError(
            REQUEST_TIMEOUT,
            f"Upstream '{server.name}' did not answer within {server.timeout_seconds:g} s",
            outcome="timeout",
        )
    if isinstance(exc, UpstreamConnectError):
        return RpcError(
            UPSTREAM_UNAVAILABLE,
            f"Could not connect to upstream '{server.name}' at {display_url(server.url)}",
            outcome="upstream_down",
        )
    if isinstance(exc, UpstreamClosedError):
        return RpcError(
            CONNECTION_CLOSED,
            f"Upstream '{server.name}' closed the connection before answering completely",
            outcome="upstream_dropped",
        )
    if isinstance(exc, UpstreamHttpError):
        return RpcError(
            UPSTREAM_INVALID_RESPONSE,
            f"Upstream '{server.name}' answered with something that is not HTTP",
            outcome="invalid_response",
        )
    return RpcError(
        UPSTREAM_UNAVAILABLE,
        f"The connection to upstream '{server.name}' failed",
        outcome="upstream_down",
    )


def status_error(status: int, server_name: str, *, user_credential: bool) -> RpcError:
    """The client-facing error for an upstream's non-2xx answer to ``server_name``: 401/403
    say whose credential was refused, anything else that the upstream failed."""
    if status in (401, 403):
        whose = (
            "your stored credential" if user_credential else "the server's configured credential"
        )
        return RpcError(
            CREDENTIAL_REJECTED,
            f"Upstream '{server_name}' rejected {whose} (HTTP {status})",
            outcome="credential_rejected",
        )
    return RpcError(
        UPSTREAM_INVALID_RESPONSE,
        f"Upstream '{server_name}' answered HTTP {status}",
        outcome="upstream_error",
    )


class Relay:
    def __init__(self, *, max_per_host: int = 128) -> None:
        self._max_per_host = max_per_host
        self.calls: Http1Pool | None = None
        """Calls (POST, DELETE): the lean keep-alive client (registry.gateway.http1)."""
        self.streams: aiohttp.ClientSession | None = None
        """Long-lived event streams (GET streams, SSE bridges)."""
        self.on_tools_changed: Callable[[ResolvedServer], None] | None = None
        """Called when a relayed stream carries ``notifications/tools/list_changed``."""

    async def start(self) -> None:
        # Short keep-alive: common upstream servers (uvicorn: 5 s) close idle connections
        # soon, and reusing one they just closed fails the call.
        self.calls = Http1Pool(max_per_origin=self._max_per_host, keepalive_seconds=4.0)
        # Long-lived event streams get their own pool so they can never starve calls of
        # connections.
        self.streams = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0, ttl_dns_cache=60),
        )

    async def close(self) -> None:
        if self.calls is not None:
            await self.calls.close()
        if self.streams is not None:
            await self.streams.close()

    async def request(
        self, method: str, server: ResolvedServer, headers: dict[str, str], body: bytes = b""
    ) -> Response:
        """Send one request upstream; returns the response (headers read, body pending)."""
        assert self.calls is not None
        try:
            return await self.calls.request(
                method,
                server.url,
                headers=headers,
                body=body,
                timeout_seconds=server.timeout_seconds,
            )
        except (Http1Error, TimeoutError, ValueError) as exc:
            raise translate(exc, server) from exc

    async def post(self, server: ResolvedServer, headers: dict[str, str], body: bytes) -> Response:
        """POST ``body`` upstream and return the response (headers read, body pending)."""
        return await self.request("POST", server, headers, body)

    async def reinitialize(
        self, server: ResolvedServer, upstream: UpstreamSession, headers: dict[str, str], seen: int
    ) -> None:
        """Replay ``initialize`` + ``notifications/initialized`` once for an expired session."""
        async with upstream.lock:
            if upstream.generation != seen:
                return  # another request already re-initialised this session
            init_headers = {k: v for k, v in headers.items() if k != "mcp-session-id"}
            response = await self.post(server, init_headers, upstream.initialize)
            try:
                if response.status != 200:
                    raise status_error(
                        response.status,
                        server.name,
                        user_credential=server.credential_mode == "user",
                    )
                session_id = response.headers.get("mcp-session-id")
                await self._read(response, server)
            finally:
                response.release()
            if session_id is not None:
                init_headers["mcp-session-id"] = session_id
            if upstream.protocol_version:
                init_headers["mcp-protocol-version"] = upstream.protocol_version
            notified = await self.post(server, init_headers, INITIALIZED)
            notified.release()
            upstream.upstream_session_id = session_id
            upstream.generation += 1

    async def stream_back(
        self,
        *,
        response: Response,
        server: ResolvedServer,
        message: Message,
        send: Send,
        extra_headers: list[tuple[bytes, bytes]],
        tools_filter: ToolsFilter | None,
    ) -> RpcError | None:
        """Send the upstream's 2xx answer to the client; see the module docstring."""
        content_type = response.headers.get("content-type", "").encode()
        if response.status == 202 or not message.is_request:
            await self._read(response, server)
            await send_bytes(send, status=response.status, body=b"", headers=extra_headers)
            return None
        if content_type.startswith(JSON):
            length = response.content_length
            if tools_filter is not None or (length is not None and length <= BUFFERED_JSON_LIMIT):
                body = await self._read(response, server)
                body = await checked_json(body, server, tools_filter)
                await send_bytes(send, status=response.status, body=body, headers=extra_headers)
                return None
        elif not content_type.startswith(EVENT_STREAM):
            raise RpcError(
                UPSTREAM_INVALID_RESPONSE,
                f"Upstream '{server.name}' answered with an unexpected content type",
                outcome="invalid_response",
            )
        if tools_filter is not None:
            body = await self._filtered_events(response, server, message, tools_filter)
            await send_bytes(
                send,
                status=response.status,
                body=body,
                content_type=EVENT_STREAM,
                headers=extra_headers,
            )
            return None
        return await self._pass_through(
            response, server, message, send, content_type, extra_headers
        )

    async def _pass_through(
        self,
        response: Response,
        server: ResolvedServer,
        message: Message,
        send: Send,
        content_type: bytes,
        extra_headers: list[tuple[bytes, bytes]],
    ) -> RpcError | None:
        writer = StreamWriter(send)
        await writer.start(status=response.status, content_type=content_type, headers=extra_headers)
        if not writer.is_sse:
            return await self._pass_json(response, server, writer)
        framer = AnswerFramer(message.id)
        failure: RpcError | None = None
        try:
            while chunk := await response.read_chunk():
                out = framer.feed(chunk)
                if framer.list_changed:
                    framer.list_changed = False
                    if self.on_tools_changed is not None:
                        self.on_tools_changed(server)
                if response.at_eof and framer.answered:
                    # The upstream's last bytes and the end of its stream arrived together.
                    await writer.end(out)
                    return None
                await writer.chunk(out)
        except (Http1Error, TimeoutError) as exc:
            failure = translate(exc, server)
        except InvalidEventError:
            failure = _garbage(server)
        if failure is None and not framer.answered:
            failure = RpcError(
                CONNECTION_CLOSED,
                f"Upstream '{server.name}' ended the stream without answering",
                outcome="upstream_dropped",
            )
        if failure is not None:
            # A held partial event is dropped; only an oversized one was partly sent already.
            await writer.rpc_error_event(
                message.id, failure.code, failure.message, mid_event=framer.mid_event
            )
        await writer.end()
        return failure

    async def _pass_json(
        self, response: Response, server: ResolvedServer, writer: StreamWriter
    ) -> RpcError | None:
        """A JSON answer too large (or of unknown length) to check whole: streamed as is."""
        try:
            while chunk := await response.read_chunk():
                if response.at_eof:
                    await writer.end(chunk)
                    return None
                await writer.chunk(chunk)
        except (Http1Error, TimeoutError) as exc:
            await writer.end()
            return translate(exc, server)
        await writer.end()
        return None

    async def _read(self, response: Response, server: ResolvedServer) -> bytes:
        try:
            return await response.read()
        except (Http1Error, TimeoutError) as exc:
            raise translate(exc, server) from exc

    async def _filtered_events(
        self,
        response: Response,
        server: ResolvedServer,
        message: Message,
        tools_filter: ToolsFilter,
    ) -> bytes:
        parser = SseParser()
        request = id_key(message.id)
        out: list[bytes] = []
        answered = False
        try:
            while chunk := await response.read_chunk():
                for event, data in parser.feed(chunk):
                    if event != "message" or not data.strip():
                        continue  # nothing to check or filter (e.g. a resumability priming event)
                    parsed = parse_jsonrpc(data, server)
                    if response_key(parsed) == request:
                        answered = True
                    out.append(sse_event(await filtered(parsed, data, tools_filter)))
        except (Http1Error, TimeoutError) as exc:
            raise translate(exc, server) from exc
        except ValueError as exc:
            raise _garbage(server) from exc
        if not answered:
            raise RpcError(
                CONNECTION_CLOSED,
                f"Upstream '{server.name}' ended the stream without answering",
                outcome="upstream_dropped",
            )
        return b"".join(out)


def _garbage(server: ResolvedServer) -> RpcError:
    return RpcError(
        UPSTREAM_INVALID_RESPONSE,
        f"Upstream '{server.name}' answered with something that is not JSON-RPC",
        outcome="invalid_response",
    )


async def checked_json(
    body: bytes, server: ResolvedServer, tools_filter: ToolsFilter | None
) -> bytes:
    """``body`` if it is a JSON-RPC 2.0 object; a ``tools/list`` result goes through the policy."""
    return await filtered(parse_jsonrpc(body, server), body, tools_filter)


def parse_jsonrpc(body: bytes, server: ResolvedServer) -> dict[str, Any]:
    """``body`` parsed, if it is a JSON-RPC 2.0 object; RpcError (-32003) otherwise."""
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise _garbage(server) from exc
    if not is_jsonrpc(message):
        raise _garbage(server)
    return message


async def filtered(message: dict[str, Any], body: bytes, tools_filter: ToolsFilter | None) -> bytes:
    """``body`` (the serialized ``message``), its ``tools/list`` result filtered if asked."""
    if tools_filter is None:
        return body
    result = message.get("result")
    if isinstance(result, dict) and isinstance(result.get("tools"), list):
        result["tools"] = await tools_filter(result["tools"])
        return json.dumps(message, separators=(",", ":")).encode()
    return body
