"""JSON-RPC framing the gateway needs: request classification, error bodies, SSE events.

The gateway relays JSON-RPC at the HTTP level; it parses a client message only to learn its
method, id and tool name (for routing, policy, logs and metrics), never to rebuild it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeGuard

# JSON-RPC 2.0 codes, and the MCP SDK's (CONNECTION_CLOSED, REQUEST_TIMEOUT).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
CONNECTION_CLOSED = -32000
REQUEST_TIMEOUT = -32001
# The gateway's own codes (implementation-defined server error range -32000..-32099).
UPSTREAM_UNAVAILABLE = -32002
UPSTREAM_INVALID_RESPONSE = -32003
CREDENTIAL_REQUIRED = -32010
CREDENTIAL_REJECTED = -32011
TOOL_NOT_ALLOWED = -32012


class RpcError(Exception):
    """A failure the client receives as a JSON-RPC error (never raw upstream text)."""

    def __init__(self, code: int, message: str, *, outcome: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.outcome = outcome
        """Short label for logs and metrics (``timeout``, ``upstream_down``, ...)."""

    def __repr__(self) -> str:
        return f"RpcError(code={self.code}, message={self.message!r}, outcome={self.outcome!r})"


@dataclass(frozen=True, slots=True)
class Message:
    """What the gateway needs to know about one client message."""

    method: str | None
    """None for a response or error the client sends back (to a server→client request)."""
    id: Any
    has_id: bool
    tool: str | None
    """``params.name`` of a ``tools/call``."""
    body: dict[str, Any]

    @property
    def is_request(self) -> bool:
        return self.method is not None and self.has_id


def parse_message(raw: bytes) -> Message:
    """Classify one client message; RpcError(PARSE_ERROR/INVALID_REQUEST) when it is not one.

    Batches (JSON arrays) are refused: MCP removed them in protocol 2025-06-18, and relaying
    them would let a ``tools/call`` bypass the per-call policy check.
    """
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RpcError(
            PARSE_ERROR, "Parse error: the body is not JSON", outcome="bad_request"
        ) from exc
    if isinstance(body, list):
        raise RpcError(
            INVALID_REQUEST,
            "Batch requests are not supported by the gateway",
            outcome="bad_request",
        )
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "Not a JSON-RPC 2.0 message", outcome="bad_request")
    method = body.get("method")
    if method is not None and not isinstance(method, str):
        raise RpcError(INVALID_REQUEST, "JSON-RPC method must be a string", outcome="bad_request")
    tool = None
    if method == "tools/call":
        params = body.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(name, str) or not name:
            raise RpcError(INVALID_REQUEST, "tools/call needs params.name", outcome="bad_request")
        tool = name
    return Message(method=method, id=body.get("id"), has_id="id" in body, tool=tool, body=body)


def is_jsonrpc(message: object) -> TypeGuard[dict[str, Any]]:
    """``message`` (parsed JSON) is a JSON-RPC 2.0 object: what an upstream must send."""
    return isinstance(message, dict) and message.get("jsonrpc") == "2.0"


def error_body(request_id: Any, code: int, message: str) -> bytes:
    """A JSON-RPC error response, serialized."""
    payload = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return json.dumps(payload, separators=(",", ":")).encode()


def sse_event(data: bytes) -> bytes:
    """One ``message`` server-sent event carrying ``data`` (a single-line JSON document)."""
    return b"event: message\ndata: " + data + b"\n\n"


def id_key(request_id: Any) -> tuple[str, Any]:
    """A dict key for a JSON-RPC id that keeps ``1`` and ``"1"`` apart."""
    return (type(request_id).__name__, request_id)


def response_key(message: dict[str, Any]) -> tuple[str, Any] | None:
    """The ``id_key`` of the request that ``message`` (a parsed JSON-RPC object) answers, or
    None when it answers none: only a message without ``method`` that carries an ``id`` is a
    response (a notification or a server→client request with the same id is not).

    ``response_key(message) == id_key(request_id)`` is the one test, on every path, that the
    upstream's answer to a request has arrived.
    """
    if "id" not in message or message.get("method") is not None:
        return None
    return id_key(message["id"])
