"""Request context: a request id on every request, one canonical log line, latency metrics.

Written as plain ASGI middleware (not BaseHTTPMiddleware) so streamed responses, such as the
gateway's server-sent events, pass through without being buffered.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.metrics import HTTP_REQUEST_SECONDS

log = structlog.get_logger("registry.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
# The gateway logs one line per MCP call and keeps its own per-server metrics; the access log
# and histogram here would only double the per-call cost on its hot path.
_GATEWAY_PREFIX = "/mcp"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        path: str = scope["path"]
        if path == _GATEWAY_PREFIX or path.startswith(_GATEWAY_PREFIX + "/"):
            await self.app(scope, receive, send_with_request_id)
            return
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            HTTP_REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(elapsed)
            if scope["path"] not in _QUIET_PATHS:
                log.info(
                    "request_completed",
                    method=scope["method"],
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.clear_contextvars()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _REQUEST_ID.match(candidate) else None
    return None


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return "unmatched"
    # FastAPI keeps the original route object of an included router, whose path lacks the
    # prefix it was included with (/api/v1); the include context carries that prefix.
    included = scope.get("fastapi", {}).get("included_router")
    prefix = getattr(getattr(included, "include_context", None), "prefix", "")
    return f"{prefix}{path}" if isinstance(prefix, str) else path
