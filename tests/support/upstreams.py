"""Real upstream MCP servers for tests and benchmarks.

Each upstream is an ``MCPServer`` served by uvicorn on ``127.0.0.1`` in a background thread
with its own event loop (``ThreadedASGIServer``), so sync and async tests can use it alike. A
tiny ASGI gate in front of the MCP app records every request's headers and enforces the
configured credential.

Credential conventions (LibreChat's, so the gateway sends keys exactly as stored):

- ``bearer``: ``Authorization: Bearer <key>``
- ``basic``: ``Authorization: Basic <key>``; the key is compared exactly as given, the
  harness neither base64-encodes nor decodes it.
- ``custom``: ``<custom_header>: <key>``

Any request without the credential gets HTTP 401 before the MCP app sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ListToolsResult, PaginatedRequestParams, ToolAnnotations
from starlette.types import ASGIApp, Receive, Scope, Send

from registry.gateway.upstream import DISCOVERY_USER_AGENT
from tests.support.asgi_server import STOP_TIMEOUT_SECONDS, ThreadedASGIServer

Transport = Literal["streamable-http", "sse"]
AuthStyle = Literal["none", "bearer", "basic", "custom"]

DEFAULT_TOOLS = ("echo", "add", "get_secret_header", "slow_echo", "big_result", "delete_everything")
# The SDK turns DNS-rebinding protection on for 127.0.0.1; a test upstream must accept whatever
# Host header a relay under test sends, so the check is off.
_NO_HOST_CHECK = TransportSecuritySettings(enable_dns_rebinding_protection=False)


@dataclass(frozen=True)
class SeenRequest:
    """One HTTP request the upstream received (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class UpstreamSpec:
    """How to build one upstream MCP server."""

    transport: Transport = "streamable-http"
    auth: AuthStyle = "none"
    api_key: str | None = None
    custom_header: str = "X-API-Key"
    delay_seconds: float = 0.0
    """Delay before answering ``initialize`` and every ``tools/call`` (a slow upstream)."""
    name: str = "echo"
    stateless: bool = False
    """Streamable HTTP only: no ``Mcp-Session-Id``; every POST stands alone."""
    json_response: bool = False
    """Streamable HTTP only: answer POSTs with ``application/json`` instead of an SSE stream."""
    tools_page_size: int | None = None
    """Split ``tools/list`` into pages of this many tools (the cursor is the next offset)."""

    def __post_init__(self) -> None:
        if self.auth != "none" and not self.api_key:
            raise ValueError(f"auth={self.auth!r} needs an api_key")

    @property
    def path(self) -> str:
        return "/mcp" if self.transport == "streamable-http" else "/sse"


class RunningUpstream:
    """One upstream MCP server running in a background thread.

    ``requests_seen`` holds the headers (lower-cased names) of every HTTP request received,
    refused ones included, in arrival order; ``requests`` holds the same requests with their
    method and path. Tools added or removed at runtime survive
    ``restart()``, which reuses the port.
    """

    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec
        self.requests_seen: list[dict[str, str]] = []
        self.requests: list[SeenRequest] = []
        self.mcp = _EchoServer(spec.name, page_size=spec.tools_page_size)
        self.mcp.middleware.append(self._middleware)
        _add_default_tools(self.mcp, spec)
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._http = ThreadedASGIServer(self.build_app, name=f"upstream-{spec.name}")

    @property
    def relayed_requests_seen(self) -> list[dict[str, str]]:
        """``requests_seen`` without the registry's own discovery sessions (catalog syncs
        may run at any time in the background)."""
        return [
            seen
            for seen in self.requests_seen
            if not seen.get("user-agent", "").startswith(DISCOVERY_USER_AGENT)
        ]

    # -- addresses and lifecycle -----------------------------------------------------------

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def url(self) -> str:
        """The MCP endpoint: ``…/mcp`` for streamable HTTP, ``…/sse`` for SSE."""
        return f"{self.base_url}{self.spec.path}"

    @property
    def is_running(self) -> bool:
        return self._http.is_running

    def start(self) -> None:
        self._http.start()

    def stop(self) -> None:
        """Kill: stop listening and cut every connection (see ``ThreadedASGIServer.stop``)."""
        self._http.stop()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port."""
        self._http.restart()

    def join(self) -> None:
        self._http.join()

    def close(self) -> None:
        self._http.close()

    # -- credentials -----------------------------------------------------------------------

    def credential_headers(self) -> dict[str, str]:
        """The headers a client must send to pass this upstream's gate."""
        key = self.spec.api_key or ""
        match self.spec.auth:
            case "none":
                return {}
            case "bearer":
                return {"Authorization": f"Bearer {key}"}
            case "basic":
                return {"Authorization": f"Basic {key}"}
            case "custom":
                return {self.spec.custom_header: key}

    def is_authorized(self, headers: dict[str, str]) -> bool:
        for name, value in self.credential_headers().items():
            received = headers.get(name.lower(), "")
            if not hmac.compare_digest(received.encode(), value.encode()):
                return False
        return True

    # -- runtime tool changes ----------------------------------------------------------------

    def add_tool(
        self, name: str, description: str, input_schema: dict[str, Any] | None = None
    ) -> None:
        """Add a tool that returns its own name; ``input_schema`` replaces the empty schema."""

        def dynamic() -> str:
            return name

        tool = Tool.from_function(dynamic, name=name, description=description)
        if input_schema is not None:
            tool = tool.model_copy(update={"parameters": input_schema})

        def install() -> None:
            # ToolManager has no public "add a prepared Tool"; its dict is the registry.
            self.mcp._tool_manager._tools[name] = tool

        self._http.run_on_loop(install)

    def remove_tool(self, name: str) -> None:
        self._http.run_on_loop(lambda: self.mcp.remove_tool(name))

    def notify_tools_changed(self) -> None:
        """Send ``notifications/tools/list_changed`` to every connected session.

        Best effort, as in the SDK: it travels on a session's standalone stream (the GET
        stream of streamable HTTP, the event stream of SSE); a stateless session has none.
        """
        loop = self._http.loop
        if loop is None:
            return

        async def notify_all() -> None:
            for connection in list(self._connections):
                await connection.send_tool_list_changed()

        asyncio.run_coroutine_threadsafe(notify_all(), loop).result(STOP_TIMEOUT_SECONDS)

    # -- internals ---------------------------------------------------------------------------

    def build_app(self) -> ASGIApp:
        """The gated MCP app; a new one per start (a session manager runs only once)."""
        if self.spec.transport == "sse":
            app: ASGIApp = self.mcp.sse_app(transport_security=_NO_HOST_CHECK)
        else:
            app = self.mcp.streamable_http_app(
                stateless_http=self.spec.stateless,
                json_response=self.spec.json_response,
                transport_security=_NO_HOST_CHECK,
            )
        return _Gate(app, self)

    async def _middleware(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        # ServerSession keeps its Connection private; the connection is what can notify later.
        connection = getattr(ctx.session, "_connection", None)
        if isinstance(connection, Connection):
            self._connections.add(connection)
        if self.spec.delay_seconds > 0 and ctx.method in ("initialize", "tools/call"):
            await anyio.sleep(self.spec.delay_seconds)
        return await call_next(ctx)


class _EchoServer(MCPServer[Any]):
    """``MCPServer`` whose ``tools/list`` can be paginated (the stock one never is)."""

    def __init__(self, name: str, *, page_size: int | None) -> None:
        super().__init__(name, version="1.0.0", log_level="WARNING")
        self.page_size = page_size

    async def _handle_list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        tools = await self.list_tools()
        if self.page_size is None:
            return ListToolsResult(tools=tools)
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + self.page_size
        next_cursor = str(end) if end < len(tools) else None
        return ListToolsResult(tools=tools[start:end], next_cursor=next_cursor)


def _add_default_tools(server: MCPServer[Any], spec: UpstreamSpec) -> None:
    credential_names = ("authorization", spec.custom_header.lower())

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, title="Echo"))
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def get_secret_header(ctx: Context) -> str:
        """Name the credential header this call carried (never its value), or ``none``."""
        received = {str(name).lower() for name in ctx.headers or {}}
        return next((name for name in credential_names if name in received), "none")

    @server.tool()
    async def slow_echo(text: str, seconds: float) -> str:
        """Return the text after sleeping ``seconds``."""
        await anyio.sleep(seconds)
        return text

    @server.tool()
    def big_result(size_kb: int) -> str:
        """Return ``size_kb`` KiB of text."""
        return "0123456789abcdef" * 64 * size_kb

    @server.tool(annotations=ToolAnnotations(destructive_hint=True))
    def delete_everything() -> str:
        """Pretend to delete everything."""
        return "nothing was deleted"


class _Gate:
    """ASGI middleware: record request headers, then refuse requests without the credential."""

    def __init__(self, app: ASGIApp, upstream: RunningUpstream) -> None:
        self.app = app
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope["headers"]
        }
        self.upstream.requests_seen.append(headers)
        self.upstream.requests.append(SeenRequest(scope["method"], scope["path"], headers))
        if self.upstream.is_authorized(headers):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "http.response.body", "body": b"unauthorized"})


@contextlib.contextmanager
def run_upstream(spec: UpstreamSpec | None = None) -> Iterator[RunningUpstream]:
    """Run one upstream for the duration of the block."""
    upstream = RunningUpstream(spec or UpstreamSpec())
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.close()
