"""Serve any ASGI app with uvicorn on 127.0.0.1 from a background thread with its own loop.

Works from sync and async tests alike: the app never shares the test's event loop, so a test
can block on ``stop()`` while the code under test still has connections open to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0


class _DropCancelledHandlers(logging.Filter):
    """Hide uvicorn's "Exception in ASGI application" for handlers cancelled by ``stop()``.

    Killing a server cancels whatever its handlers were awaiting (a slow tool, an open SSE
    stream); that is the point of ``stop()``, not an application error worth a traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


logging.getLogger("uvicorn.error").addFilter(_DropCancelledHandlers())


class _Server(uvicorn.Server):
    """uvicorn server that sets a threading event once it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self.ready.set()


class ThreadedASGIServer:
    """One ASGI app served on ``127.0.0.1``; ``app_factory`` builds a fresh app per start."""

    def __init__(self, app_factory: Callable[[], ASGIApp], *, name: str = "asgi") -> None:
        self.app_factory = app_factory
        self.name = name
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The server's event loop while it runs."""
        return self._loop if self.is_running else None

    def start(self) -> None:
        """Listen on a free port (first start) or on the previous port, and wait until ready."""
        if self.is_running:
            raise RuntimeError(f"{self.name} is already running")
        sock = _bind(self.port)
        self.port = sock.getsockname()[1]
        server = _Server(
            uvicorn.Config(
                self.app_factory(),
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

        thread = threading.Thread(target=run, name=f"{self.name}-{self.port}", daemon=True)
        self._server, self._thread, self._loop = server, thread, loop
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.ready.wait(0.02):
            if not thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        """Kill the server: stop listening and cut every open connection.

        Returns once the port refuses connections and every connection is dropped. The server
        thread may need up to about a second more to wind down (the MCP SDK gives an in-flight
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
            killed.wait(STOP_TIMEOUT_SECONDS)
        self._stopping.append(thread)

    def join(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Wait until every stopped server thread has ended."""
        while self._stopping:
            thread = self._stopping.pop()
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"{self.name} server thread did not end")

    def close(self) -> None:
        """Stop and wait for the server threads (fixture teardown)."""
        self.stop()
        self.join()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port."""
        self.stop()
        self.start()

    def run_on_loop(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the server's loop (or right here if it is not running)."""
        loop = self.loop
        if loop is None:
            action()
            return

        async def run() -> None:
            action()

        asyncio.run_coroutine_threadsafe(run(), loop).result(STOP_TIMEOUT_SECONDS)


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Lets restart() take the same port back at once.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    await server.serve(sockets=[sock])
    # force_exit skips the lifespan shutdown; run it so an MCP session manager (and its
    # per-session tasks) end cleanly rather than being cancelled when the loop closes.
    if server.started:
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
def serve_asgi(app: ASGIApp, *, name: str = "asgi") -> Iterator[ThreadedASGIServer]:
    """Serve ``app`` for the duration of the block (for misbehaving fake upstreams)."""
    server = ThreadedASGIServer(lambda: app, name=name)
    server.start()
    try:
        yield server
    finally:
        server.close()
