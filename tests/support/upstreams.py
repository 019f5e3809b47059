"""Real upstream MCP servers for tests and benchmarks.

Each upstream is an ``MCPServer`` served by uvicorn on ``127.0.0.1`` in a background thread
with its own event loop, so sync and async tests can use it alike. A tiny ASGI gate in front
of the MCP app records every request's headers and enforces the configured credential.

Credential conventions (the ones LibreChat uses, so the gateway can send keys verbatim):

- ``bearer``: ``Authorization: Bearer <key>``
- ``basic``: ``Authorization: Basic <key>``; the key is compared exactly as given, the
  harness does not base64-encode or decode it.
- ``custom``: ``<custom_header>: <key>``

Anything else gets HTTP 401 before the MCP app sees the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import uvicorn
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ListToolsResult, PaginatedRequestParams, ToolAnnotations
from starlette.types import ASGIApp, Receive, Scope, Send

Transport = Literal["streamable-http", "sse"]
AuthStyle = Literal["none", "bearer", "basic", "custom"]

HOST = "127.0.0.1"
_START_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_SECONDS = 5.0
# The SDK turns on DNS-rebinding protection for 127.0.0.1; a test upstream must accept whatever
# Host a relay under test sends, so the check is off.
_NO_HOST_CHECK = TransportSecuritySettings(enable_dns_rebinding_protection=False)


class _DropCancelledHandlers(logging.Filter):
    """Hide uvicorn's "Exception in ASGI application" for handlers cancelled by ``stop()``.

    Killing an upstream cancels whatever its handlers were awaiting (a slow tool, an open SSE
    stream); that is the point of ``stop()``, not an application error worth a traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


logging.getLogger("uvicorn.error").addFilter(_DropCancelledHandlers())


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
    """Streamable HTTP only: no ``Mcp-Session-Id``, every POST stands alone."""
    json_response: bool = False
    """Streamable HTTP only: answer POSTs with ``application/json`` instead of an SSE stream."""
    tools_page_size: int | None = None
    """Split ``tools/list`` into pages of this size (cursor = next offset)."""

    def __post_init__(self) -> None:
        if self.auth != "none" and not self.api_key:
            raise ValueError(f"auth={self.auth!r} needs an api_key")

    @property
    def path(self) -> str:
        return "/mcp" if self.transport == "streamable-http" else "/sse"


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
        return ListToolsResult(
            tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None
        )


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
        if not self.upstream.is_authorized(headers):
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"text/plain"),
                        (b"www-authenticate", b"Bearer"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await self.app(scope, receive, send)


class _Server(uvicorn.Server):
    """uvicorn server that signals a threading event once it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self.ready.set()


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class RunningUpstream:
    """One upstream MCP server running in a background thread.

    ``requests_seen`` holds the headers (lower-cased names) of every HTTP request received,
    including refused ones, in arrival order. Tools added or removed at runtime survive
    ``restart()``.
    """

    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec
        self.port = 0
        self.requests_seen: list[dict[str, str]] = []
        self.mcp = _EchoServer(spec.name, page_size=spec.tools_page_size)
        self.mcp.middleware.append(self._middleware)
        _add_default_tools(self.mcp, spec)
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: list[threading.Thread] = []

    # -- addresses -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The MCP endpoint: ``…/mcp`` for streamable HTTP, ``…/sse`` for SSE."""
        return f"{self.base_url}{self.spec.path}"

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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
        expected = self.credential_headers()
        for name, value in expected.items():
            got = headers.get(name.lower(), "")
            if not hmac.compare_digest(got.encode(), value.encode()):
                return False
        return True

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start serving on a free port (first start) or on the previous port."""
        if self.is_running:
            raise RuntimeError("upstream is already running")
        sock = _bind(self.port)
        self.port = sock.getsockname()[1]
        server = _Server(
            uvicorn.Config(
                _Gate(self._build_app(), self),
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="on",
            )
        )
        loop = asyncio.new_event_loop()

        def run() -> None:
            try:
                loop.run_until_complete(_serve(server, sock))
            finally:
                sock.close()
                _cancel_remaining(loop)
                loop.close()

        thread = threading.Thread(target=run, name=f"upstream-{self.spec.name}", daemon=True)
        self._server, self._thread, self._loop = server, thread, loop
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not server.ready.wait(0.02):
            if not thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("upstream did not start")

    def stop(self) -> None:
        """Kill the server: stop listening and drop every open connection.

        Returns once the port refuses connections and every connection is cut. The server
        thread may take up to about a second longer to wind down (the SDK gives an in-flight
        request that long to write its error); ``join()`` waits for that.
        """
        server, thread, loop = self._server, self._thread, self._loop
        self._server = self._thread = self._loop = None
        if server is None or thread is None or loop is None:
            return
        if thread.is_alive():
            killed = threading.Event()

            def kill() -> None:
                _kill(server)
                killed.set()

            with contextlib.suppress(RuntimeError):  # the loop closed since is_alive()
                loop.call_soon_threadsafe(kill)
            killed.wait(_STOP_TIMEOUT_SECONDS)
        self._stopping.append(thread)

    def join(self, timeout: float = _STOP_TIMEOUT_SECONDS) -> None:
        """Wait until every stopped server thread has ended."""
        while self._stopping:
            thread = self._stopping.pop()
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError("upstream server thread did not end")

    def close(self) -> None:
        """Stop and wait for the server thread: the teardown of fixtures and ``run_upstream``."""
        self.stop()
        self.join()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port."""
        self.stop()
        self.start()

    def _build_app(self) -> ASGIApp:
        # A streamable HTTP session manager runs once, so every start builds a fresh app.
        if self.spec.transport == "sse":
            return self.mcp.sse_app(transport_security=_NO_HOST_CHECK)
        return self.mcp.streamable_http_app(
            stateless_http=self.spec.stateless,
            json_response=self.spec.json_response,
            transport_security=_NO_HOST_CHECK,
        )

    # -- runtime tool changes ----------------------------------------------------------------

    def add_tool(
        self, name: str, description: str, input_schema: dict[str, Any] | None = None
    ) -> None:
        """Add a tool that returns its own name; ``input_schema`` replaces the empty one."""

        def dynamic() -> str:
            return name

        tool = Tool.from_function(dynamic, name=name, description=description)
        if input_schema is not None:
            tool = tool.model_copy(update={"parameters": input_schema})

        def install() -> None:
            # ToolManager has no public "add a prepared Tool"; its dict is the registry.
            self.mcp._tool_manager._tools[name] = tool

        self._on_loop(install)

    def remove_tool(self, name: str) -> None:
        self._on_loop(lambda: self.mcp.remove_tool(name))

    def notify_tools_changed(self) -> None:
        """Send ``notifications/tools/list_changed`` to every connected session.

        Best effort, as in the SDK: a session without an open standalone (GET) stream, or
        an SSE/stateless one that has gone, does not receive it.
        """
        loop = self._loop
        if loop is None or not self.is_running:
            return

        async def notify_all() -> None:
            for connection in list(self._connections):
                await connection.send_tool_list_changed()

        asyncio.run_coroutine_threadsafe(notify_all(), loop).result(_STOP_TIMEOUT_SECONDS)

    def _on_loop(self, change: Any) -> None:
        loop = self._loop
        if loop is None or not self.is_running:
            change()
            return

        async def run() -> None:
            change()

        asyncio.run_coroutine_threadsafe(run(), loop).result(_STOP_TIMEOUT_SECONDS)

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


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    await server.serve(sockets=[sock])
    # force_exit skips the lifespan shutdown; run it so the MCP session manager (and its
    # per-session tasks) end cleanly instead of being cancelled when the loop closes.
    if server.lifespan is not None and server.started:
        await server.lifespan.shutdown()


def _kill(server: uvicorn.Server) -> None:
    server.should_exit = True
    server.force_exit = True
    for listener in server.servers:
        listener.close()
    for connection in list(server.server_state.connections):
        transport = getattr(connection, "transport", None)
        if isinstance(transport, asyncio.Transport):
            transport.abort()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


@contextlib.contextmanager
def run_upstream(spec: UpstreamSpec | None = None) -> Iterator[RunningUpstream]:
    """Run one upstream for the duration of the block."""
    upstream = RunningUpstream(spec or UpstreamSpec())
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.close()
