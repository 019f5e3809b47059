"""Bridge to an upstream speaking the legacy HTTP+SSE transport (protocol 2024-11-05).

Per gateway session, one background task holds the upstream's GET event stream open. Its first
``endpoint`` event names where client messages are POSTed. Responses come back on the stream;
the bridge matches them to waiting requests by JSON-RPC id. Everything else the upstream sends
(notifications, server→client requests) goes to ``outbox``, which the client's GET stream
drains. When the stream ends the bridge is closed: waiting requests fail, and the next request
opens a new bridge and re-initialises (see ``relay.Relay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import structlog

from registry.gateway.jsonrpc import (
    CONNECTION_CLOSED,
    REQUEST_TIMEOUT,
    UPSTREAM_INVALID_RESPONSE,
    UPSTREAM_UNAVAILABLE,
    RpcError,
    id_key,
    response_key,
)
from registry.gateway.relay import status_error
from registry.gateway.sse import SseParser
from registry.gateway.upstream import display_url

log = structlog.get_logger("registry.gateway")

OUTBOX_SIZE = 1000


class BridgeClosedError(RpcError):
    def __init__(self, message: str = "The upstream closed its event stream") -> None:
        super().__init__(CONNECTION_CLOSED, message, outcome="upstream_dropped")


class SessionGoneError(BridgeClosedError):
    """The message was not accepted: the bridge was closed, or the upstream forgot the session.

    Safe to retry on a new bridge (unlike a bridge closing while a request waits).
    """


class SseBridge:
    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        url: str,
        headers: dict[str, str],
        timeout_seconds: float,
        server_name: str,
        outbox: asyncio.Queue[bytes],
        on_tools_changed: Callable[[], None] | None = None,
        user_credential: bool = False,
    ) -> None:
        self._http = http
        self._user_credential = user_credential
        """The credential sent is the caller's own (how a refusal is worded)."""
        self._on_tools_changed = on_tools_changed
        self._url = url
        self._headers = headers
        self._timeout = timeout_seconds
        self._server = server_name
        self._endpoint: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending: dict[tuple[str, Any], asyncio.Future[bytes]] = {}
        self.outbox = outbox
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    async def start(self) -> None:
        """Open the event stream and wait for the ``endpoint`` event; RpcError on failure."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(asyncio.shield(self._endpoint), self._timeout)
        except TimeoutError as exc:
            self.close()
            raise RpcError(
                REQUEST_TIMEOUT,
                f"Upstream '{self._server}' did not open its event stream "
                f"within {self._timeout:g} s",
                outcome="timeout",
            ) from exc
        except BaseException:
            self.close()
            raise

    async def request(self, message_id: Any, body: bytes) -> bytes:
        """POST a request and wait for its response on the stream (the raw JSON message)."""
        key = id_key(message_id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            await self.send(body)
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError as exc:
            raise RpcError(
                REQUEST_TIMEOUT,
                f"Upstream '{self._server}' did not answer within {self._timeout:g} s",
                outcome="timeout",
            ) from exc
        finally:
            self._pending.pop(key, None)

    async def send(self, body: bytes) -> None:
        """POST one message (a notification or a response) to the upstream's endpoint."""
        if self.closed:
            raise SessionGoneError()
        endpoint = self._endpoint.result()
        try:
            async with self._http.post(
                endpoint,
                data=body,
                headers={**self._headers, "content-type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                await response.read()
                status = response.status
        except TimeoutError as exc:
            raise RpcError(
                REQUEST_TIMEOUT,
                f"Upstream '{self._server}' did not accept the message within {self._timeout:g} s",
                outcome="timeout",
            ) from exc
        except aiohttp.ClientError as exc:
            raise RpcError(
                UPSTREAM_UNAVAILABLE,
                f"Could not reach upstream at {display_url(self._url)}",
                outcome="upstream_down",
            ) from exc
        if status == 404:
            # The upstream forgot the session behind this endpoint (restarted or expired).
            self.close()
            raise SessionGoneError("The upstream no longer knows this session")
        if status >= 400:
            raise RpcError(
                UPSTREAM_INVALID_RESPONSE,
                f"Upstream '{self._server}' refused the message (HTTP {status})",
                outcome="upstream_error",
            )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        self._fail_all(BridgeClosedError())

    def _fail_all(self, error: RpcError) -> None:
        if not self._endpoint.done():
            self._endpoint.set_exception(error)
            self._endpoint.exception()  # retrieved: nobody may be waiting any more
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    async def _run(self) -> None:
        error: RpcError = BridgeClosedError()
        try:
            async with self._http.get(
                self._url,
                headers={**self._headers, "accept": "text/event-stream"},
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeout, sock_read=None
                ),
            ) as response:
                if response.status in (401, 403):
                    error = status_error(
                        response.status, self._server, user_credential=self._user_credential
                    )
                    return
                content_type = response.headers.get("content-type", "")
                if response.status != 200 or not content_type.startswith("text/event-stream"):
                    error = RpcError(
                        UPSTREAM_INVALID_RESPONSE,
                        f"Upstream '{self._server}' did not open an event stream "
                        f"(HTTP {response.status})",
                        outcome="upstream_error",
                    )
                    return
                await self._read_events(response.content)
        except aiohttp.ClientConnectorError:
            error = RpcError(
                UPSTREAM_UNAVAILABLE,
                f"Could not connect to upstream at {display_url(self._url)}",
                outcome="upstream_down",
            )
        except (aiohttp.ClientError, ValueError):
            error = BridgeClosedError()
        finally:
            self.closed = True
            self._fail_all(error)

    async def _read_events(self, stream: aiohttp.StreamReader) -> None:
        parser = SseParser()
        async for chunk in stream.iter_any():
            for event, data in parser.feed(chunk):
                self._dispatch(event, data)

    def _dispatch(self, event: str, data: bytes) -> None:
        if event == "endpoint":
            if not self._endpoint.done():
                endpoint = urljoin(self._url, data.decode("utf-8", "replace").strip())
                if urlsplit(endpoint).netloc != urlsplit(self._url).netloc:
                    # An endpoint on another origin would receive the injected credentials.
                    raise ValueError("upstream endpoint on another origin")
                self._endpoint.set_result(endpoint)
            return
        if event != "message":
            return
        try:
            message = json.loads(data)
        except ValueError:
            log.info("upstream_event_unparsable", server=self._server)
            return
        key = response_key(message) if isinstance(message, dict) else None
        if key is not None:
            future = self._pending.get(key)
            if future is not None and not future.done():
                future.set_result(data)
                return
        if (
            isinstance(message, dict)
            and message.get("method") == "notifications/tools/list_changed"
            and self._on_tools_changed is not None
        ):
            self._on_tools_changed()
        with contextlib.suppress(asyncio.QueueFull):
            # A client that never reads its GET stream loses notifications, not memory.
            self.outbox.put_nowait(data)
