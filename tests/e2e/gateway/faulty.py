"""A misbehaving upstream speaking raw HTTP/1.1, for faults the MCP SDK's servers never make.

``faulty_upstream(fault)`` listens on ``127.0.0.1`` in the test's own event loop (the gateway
under test runs in another thread, so it can connect while the test awaits). ``initialize`` is
answered correctly, so a gateway session opens; notifications get 202, ``DELETE`` 200, ``GET``
405; every other request gets the fault:

- ``drop_mid_event``: an SSE answer with one complete notification, then half of the
  response event, then the connection ends (the chunked body never finishes);
- ``notification_then_end``: an SSE answer with one notification, then a clean end;
- ``garbage_event``: an SSE answer whose only event carries ``{{{garbage``;
- ``not_http``: bytes that are not an HTTP response;
- ``split_answer``: a valid answer (CRLF line ends) in several chunks, split inside lines and
  inside the blank line that ends the event (not a fault: the framing must cope);
- ``cr_answer``: a valid answer (a notification, then the response: ``{"tools": []}`` for
  ``tools/list``, ``{"content": []}`` otherwise) whose lines end with a lone CR, which SSE
  allows, split between the two CRs that end the response event (not a fault either);
- ``session_lost_then_refused``: 404 (session unknown), and 401 for every later
  ``initialize`` (the gateway's transparent re-initialise is refused).

``requests`` records ``(method, JSON-RPC method or None)`` of everything received.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

Fault = Literal[
    "drop_mid_event",
    "notification_then_end",
    "garbage_event",
    "not_http",
    "split_answer",
    "cr_answer",
    "session_lost_then_refused",
]

NOTIFICATION = (
    b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message",'
    b'"params":{"level":"info","data":"working"}}\n\n'
)
PARTIAL_RESPONSE = b'event: message\ndata: {"jsonrpc":"2.0","id":2,"res'
INITIALIZE_RESULT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "faulty", "version": "1"},
}
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


@dataclass
class FaultyUpstream:
    fault: Fault
    port: int = 0
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    connections: set[asyncio.StreamWriter] = field(default_factory=set)
    initialized: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.connections.discard(writer)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        method = head.split(" ", 1)[0]
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body: dict[str, Any] = json.loads(await reader.readexactly(length)) if length else {}
        self.requests.append((method, body.get("method")))
        if method == "DELETE":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        elif method != "POST":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
        elif "id" not in body:
            writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
        elif body.get("method") == "initialize" and self.initialized:
            writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
        elif body.get("method") == "initialize":
            self.initialized = self.fault == "session_lost_then_refused"
            payload = json.dumps(
                {"jsonrpc": "2.0", "id": body["id"], "result": INITIALIZE_RESULT}
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: up-1\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(payload), payload)
            )
        else:
            return await self._fault(writer, body["id"], body.get("method"))
        await writer.drain()
        return True

    async def _fault(
        self, writer: asyncio.StreamWriter, request_id: Any, method: str | None
    ) -> bool:
        match self.fault:
            case "drop_mid_event":
                writer.write(SSE_HEAD + _chunk(NOTIFICATION) + _chunk(PARTIAL_RESPONSE))
                await writer.drain()
                return False  # ends the connection: the chunked body never finishes
            case "notification_then_end":
                writer.write(SSE_HEAD + _chunk(NOTIFICATION) + b"0\r\n\r\n")
            case "garbage_event":
                payload = b"event: message\ndata: {{{garbage\n\n"
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(payload), payload)
                )
            case "not_http":
                writer.write(b"GARBAGE GARBAGE\r\n\r\n")
                await writer.drain()
                return False
            case "session_lost_then_refused":
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            case "split_answer":
                answer = json.dumps(
                    {"jsonrpc": "2.0", "id": request_id, "result": {"content": []}}
                ).encode()
                data = b"event: message\r\ndata: " + answer + b"\r\n\r\n"
                writer.write(SSE_HEAD)
                for part in (data[:20], data[20:-3], data[-3:-1], data[-1:]):
                    writer.write(_chunk(part))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            case "cr_answer":
                key = "tools" if method == "tools/list" else "content"
                result = {"jsonrpc": "2.0", "id": request_id, "result": {key: []}}
                response = b"event: message\rdata: " + json.dumps(result).encode() + b"\r\r"
                events = NOTIFICATION.replace(b"\n", b"\r") + response
                writer.write(SSE_HEAD)
                for part in (events[:-1], events[-1:]):
                    writer.write(_chunk(part))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@asynccontextmanager
async def faulty_upstream(fault: Fault) -> AsyncIterator[FaultyUpstream]:
    upstream = FaultyUpstream(fault)
    server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
    upstream.port = server.sockets[0].getsockname()[1]
    try:
        yield upstream
    finally:
        server.close()
        for writer in list(upstream.connections):
            writer.close()
        await server.wait_closed()
