"""Writing gateway responses to the ASGI ``send`` callable (no framework in the hot path)."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

from registry.gateway.jsonrpc import error_body, sse_event

JSON = b"application/json"
EVENT_STREAM = b"text/event-stream"
SESSION_HEADER = b"mcp-session-id"
SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


async def send_bytes(
    send: Send,
    *,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    raw_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        raw_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def send_api_error(
    send: Send, *, status: int, code: str, message: str, request_id: str | None
) -> None:
    """An HTTP error in the API's shape (before the MCP exchange starts)."""
    payload: dict[str, Any] = {"error": code, "message": message}
    if request_id:
        payload["request_id"] = request_id
    headers = [(b"www-authenticate", b"Bearer")] if status == 401 else None
    await send_bytes(send, status=status, body=json.dumps(payload).encode(), headers=headers)


async def send_rpc_error(
    send: Send, *, request_id: Any, code: int, message: str, status: int = 200
) -> None:
    await send_bytes(send, status=status, body=error_body(request_id, code, message))


class StreamWriter:
    """A streamed response: start once, then chunks, then the end."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.is_sse = False

    async def start(
        self, *, status: int, content_type: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.is_sse = content_type.startswith(EVENT_STREAM)
        raw = [(b"content-type", content_type), *headers]
        if self.is_sse:
            raw.extend(SSE_HEADERS)
        await self._send({"type": "http.response.start", "status": status, "headers": raw})
        self.started = True

    async def chunk(self, data: bytes) -> None:
        if data:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def rpc_error_event(
        self, request_id: Any, code: int, message: str, *, mid_event: bool = False
    ) -> None:
        """A JSON-RPC error as one more SSE event; ``mid_event``: part of an event was sent,
        which has to be ended first (the client then sees it as an unparsable event)."""
        prefix = b"\n\n" if mid_event else b""
        await self.chunk(prefix + sse_event(error_body(request_id, code, message)))

    async def end(self, data: bytes = b"") -> None:
        """End the response, with its last ``data`` if any (one write instead of two)."""
        await self._send({"type": "http.response.body", "body": data, "more_body": False})
