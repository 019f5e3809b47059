"""A lean pooled HTTP/1.1 client for the gateway's calls to Streamable HTTP upstreams.

Why not aiohttp here: on two cores every microsecond the gateway spends on a call is added to
the caller's latency, and aiohttp's request/response objects, multidict headers, connector and
stream reader cost a few hundred microseconds per call (docs/performance.md). This client is an
``asyncio.Protocol`` fed to httptools' response parser: one pre-encoded header block per
request, a plain ``dict`` of headers, body chunks handed over as they arrive (nothing is
buffered beyond ``HIGH_WATER`` bytes: reading pauses until the consumer catches up).

What it covers: ``http``/``https`` origins, keep-alive connections pooled per origin (at most
``max_per_origin`` open at once, idle ones closed after ``keepalive_seconds``), responses
framed by Content-Length, chunked encoding or the end of the connection (server-sent events
are just a streamed body). Every wait for upstream bytes is bounded by the request's
``timeout_seconds`` (like aiohttp's ``sock_read``), connecting too. The long-lived GET streams
and the SSE bridge stay on aiohttp.

Errors (``Http1Error``, callers translate them at the boundary)::

    Http1Error
    ├── UpstreamConnectError    the connection could not be opened
    ├── UpstreamClosedError     the upstream closed the connection before the response ended
    └── UpstreamHttpError       the upstream's bytes are not a valid HTTP/1.1 response
    TimeoutError                no byte within ``timeout_seconds`` (connect, headers, or any chunk)

Cancelling the task that waits on a response (the client went away) and then calling
``Response.release()`` closes the connection, which aborts the upstream request.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 256 * 1024
"""Buffered body bytes at which reading from the upstream pauses (large streamed results)."""
_TARGET_CACHE_SIZE = 1024


class Http1Error(Exception):
    """Base class of the client's transport failures."""


class UpstreamConnectError(Http1Error):
    """The TCP (or TLS) connection to the upstream could not be opened."""


class UpstreamClosedError(Http1Error):
    """The upstream closed the connection before its response was complete."""


class UpstreamHttpError(Http1Error):
    """The upstream sent bytes that are not a valid HTTP/1.1 response."""


@dataclass(frozen=True, slots=True)
class _Target:
    origin: tuple[str, str, int]
    host: str
    port: int
    is_tls: bool
    request_target: str
    host_header: str


def _parse_target(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamConnectError(f"Unsupported upstream URL scheme {scheme!r}")
    is_tls = scheme == "https"
    port = parts.port or (443 if is_tls else 80)
    host = parts.hostname
    netloc_host = f"[{host}]" if ":" in host else host
    default_port = 443 if is_tls else 80
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return _Target(
        origin=(scheme, host, port),
        host=host,
        port=port,
        is_tls=is_tls,
        request_target=path,
        host_header=netloc_host if port == default_port else f"{netloc_host}:{port}",
    )


class Response:
    """An upstream response: status and headers read, body pending (``read``/``read_chunk``).

    Always call ``release()`` (in a ``finally``): it returns a fully read connection to the
    pool and closes any other one.
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_connection",
        "_error",
        "_keep_alive",
        "_paused",
        "_timeout",
        "_until_eof",
        "_waiter",
        "complete",
        "content_length",
        "headers",
        "status",
    )

    def __init__(self, connection: _Connection, timeout: float) -> None:
        self._connection: _Connection | None = connection
        self._timeout = timeout
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._keep_alive = False
        self._paused = False
        self._until_eof = False
        self.status = 0
        self.headers: dict[str, str] = {}
        """Lower-cased names; a repeated header keeps its last value."""
        self.content_length: int | None = None
        self.complete = False
        """The whole body has been received (it may still be buffered here)."""

    @property
    def at_eof(self) -> bool:
        """The body has been received and handed out completely."""
        return self.complete and not self._chunks

    async def read_chunk(self) -> bytes:
        """The body bytes received so far that were not handed out yet; ``b""`` at the end."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                if self._paused:
                    self._paused = False
                    connection = self._connection
                    if connection is not None and connection.transport is not None:
                        connection.transport.resume_reading()
                return data
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()

    async def read(self) -> bytes:
        """The whole body."""
        parts: list[bytes] = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Give the connection back (body complete, keep-alive) or close it (anything else)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        connection.response = None
        if self.complete and self._keep_alive and self._error is None:
            connection.pool.put_back(connection)
        else:
            connection.pool.discard(connection)

    close = release

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(self._timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- fed by the connection's parser ---------------------------------------------------

    def _body(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= HIGH_WATER and not self._paused:
            connection = self._connection
            if connection is not None and connection.transport is not None:
                self._paused = True
                connection.transport.pause_reading()
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self.complete and self._error is None:
            self._error = exc
        self._wake()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One upstream connection; the parser's callbacks fill in the current ``response``."""

    def __init__(self, pool: _OriginPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.idle_since = 0.0
        self._interim = False
        self._write_ready: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or response.complete:
            # Bytes nobody asked for: the connection is not reusable.
            if response is not None:
                response._keep_alive = False
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            response._fail(UpstreamHttpError(f"Invalid HTTP response: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost does the bookkeeping

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._write_ready
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        response = self.response
        if response is None:
            self.pool.forget_idle(self)
            return
        if response._until_eof and not response.complete:
            # A body framed by the end of the connection ends here.
            response.complete = True
            response._keep_alive = False
            response._wake()
            return
        response._fail(UpstreamClosedError("The upstream closed the connection"))

    def pause_writing(self) -> None:
        self._write_ready = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        waiter, self._write_ready = self._write_ready, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        if response is not None:
            response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        status = self.parser.get_status_code()
        if status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            response.headers = {}
            self._interim = True
            return
        response.status = status
        headers = response.headers
        length = headers.get("content-length")
        if length is not None and length.isdigit():
            response.content_length = int(length)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        response._until_eof = (
            length is None and not chunked and status >= 200 and status not in (204, 304)
        )
        response._wake()

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is not None:
            response._body(body)

    def on_message_complete(self) -> None:
        response = self.response
        if self._interim:
            self._interim = False
            return
        if response is None:
            return
        response._keep_alive = self.parser.should_keep_alive() and not response._until_eof
        response.complete = True
        response._wake()

    # -- pool side --------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)
        waiter = self._write_ready
        if waiter is not None:
            # A large body: let the kernel take it before waiting for the answer.
            await waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _OriginPool:
    """Connections to one origin: idle ones (most recently used last) and a slot count."""

    def __init__(
        self, *, target: _Target, limit: int, keepalive_seconds: float, ssl_context: ssl.SSLContext
    ) -> None:
        self.target = target
        self.limit = limit
        self.keepalive_seconds = keepalive_seconds
        self.ssl_context = ssl_context
        self.idle: deque[_Connection] = deque()
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None

    async def acquire(self, timeout_seconds: float) -> _Connection:
        while self.active >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout_seconds)
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # we were handed a slot we no longer want
                elif waiter in self.waiters:
                    self.waiters.remove(waiter)
                raise
        self.active += 1
        try:
            return await self._idle_or_new(timeout_seconds)
        except BaseException:
            self._free_slot()
            raise

    async def _idle_or_new(self, timeout_seconds: float) -> _Connection:
        idle = self.idle
        if idle:
            self._prune(time.monotonic())
            while idle:
                connection = idle.pop()
                transport = connection.transport
                if (
                    not connection.closed
                    and transport is not None
                    and not transport.is_closing()
                    and not _peer_closed(transport)
                ):
                    return connection
                connection.close()
        target = self.target
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_seconds):
                transport, protocol = await loop.create_connection(
                    lambda: _Connection(self),
                    target.host,
                    target.port,
                    ssl=self.ssl_context if target.is_tls else None,
                )
        except TimeoutError:
            raise
        except OSError as exc:
            raise UpstreamConnectError(str(exc)) from exc
        # uvloop may return before it has called connection_made.
        protocol.transport = transport
        return protocol

    def put_back(self, connection: _Connection) -> None:
        self._free_slot()
        if connection.closed:
            return
        connection.idle_since = time.monotonic()
        self.idle.append(connection)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(
                self.keepalive_seconds, self._sweep_idle
            )

    def discard(self, connection: _Connection) -> None:
        self._free_slot()
        connection.close()

    def forget_idle(self, connection: _Connection) -> None:
        """The upstream closed an idle connection."""
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        while self.idle:
            self.idle.pop().close()

    def _free_slot(self) -> None:
        self.active -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _prune(self, now: float) -> None:
        idle = self.idle
        limit = now - self.keepalive_seconds
        while idle and idle[0].idle_since <= limit:
            idle.popleft().close()

    def _sweep_idle(self) -> None:
        self._sweep = None
        self._prune(time.monotonic())
        if self.idle:
            self._sweep = asyncio.get_running_loop().call_later(
                self.keepalive_seconds, self._sweep_idle
            )


def _peer_closed(transport: asyncio.Transport) -> bool:
    """Bytes are waiting on an idle connection: the upstream closed it (end of stream or
    reset) and the event loop has not processed that yet, or it sent something unasked.

    Either way it cannot carry a request. Without this check a call sent right after the
    upstream went away fails as "closed the connection" on the dead connection instead of
    finding out on a new one (urllib3 checks the same way before reusing a connection).
    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class Http1Pool:
    """Keep-alive HTTP/1.1 connections per upstream origin; see the module docstring."""

    def __init__(
        self,
        *,
        max_per_origin: int = 128,
        keepalive_seconds: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_per_origin = max_per_origin
        self._keepalive_seconds = keepalive_seconds
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._origins: dict[tuple[str, str, int], _OriginPool] = {}
        self._targets: dict[str, _Target] = {}

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes = b"",
        timeout_seconds: float,
    ) -> Response:
        """Send one request; returns once the status and headers arrived (body pending).

        Raises ``UpstreamConnectError``, ``UpstreamClosedError``, ``UpstreamHttpError`` or
        ``TimeoutError`` (no byte within ``timeout_seconds``), and ``ValueError`` for a header
        that would break the request framing.
        """
        target = self._targets.get(url)
        if target is None:
            target = _parse_target(url)
            if len(self._targets) >= _TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[url] = target
        head = _encode_head(method, target, headers, len(body))
        origin = self._origins.get(target.origin)
        if origin is None:
            origin = self._origins[target.origin] = _OriginPool(
                target=target,
                limit=self._max_per_origin,
                keepalive_seconds=self._keepalive_seconds,
                ssl_context=self._ssl_context,
            )
        connection = await origin.acquire(timeout_seconds)
        response = Response(connection, timeout_seconds)
        connection.response = response
        try:
            if connection.closed:
                raise UpstreamClosedError("The upstream closed the connection")
            await connection.send(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                await connection.send(body)
            while not response.status:
                if response._error is not None:
                    raise response._error
                await response._wait()
        except BaseException:
            response.release()
            raise
        return response

    async def close(self) -> None:
        for origin in self._origins.values():
            origin.close()
        self._origins.clear()


def _encode_head(method: str, target: _Target, headers: dict[str, str], length: int) -> bytes:
    lines = [f"{method} {target.request_target} HTTP/1.1\r\nhost: {target.host_header}\r\n"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
            raise ValueError(f"Invalid character in upstream header {name!r}")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {length}\r\n\r\n")
    return "".join(lines).encode("utf-8")
