"""Discovery of an upstream MCP server: connect, initialize, list its tools, disconnect.

This module is the boundary to the ``mcp`` SDK client and ``httpx2``: everything they raise is
translated into ``registry.errors.Upstream*Error`` here, chained with ``from exc``. Messages
name the upstream by its URL without userinfo or query string and never contain header
values, so they are safe to log and to return to callers.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import httpx2
import structlog
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import (
    CONNECTION_CLOSED,
    Implementation,
    InitializeResult,
    PaginatedRequestParams,
    Tool,
)
from pydantic import ValidationError

from registry.errors import (
    InvalidRequestError,
    RegistryError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)

AuthorizationType = Literal["bearer", "basic", "custom"]
UpstreamTransport = Literal["streamable-http", "sse"]


def transport_for(config_type: object) -> UpstreamTransport | None:
    """The MCP transport a server's ``config.type`` names (``http`` is streamable HTTP), or
    None for one the registry does not speak (``stdio``, ``websocket``)."""
    if config_type in ("streamable-http", "http"):
        return "streamable-http"
    if config_type == "sse":
        return "sse"
    return None


MAX_TOOL_PAGES = 100
CLIENT_INFO = Implementation(name="mcp-gateway-registry", version="0.1.0")
# Lets upstream operators tell the registry's discovery sessions from relayed client traffic.
DISCOVERY_USER_AGENT = f"{CLIENT_INFO.name}-discovery/{CLIENT_INFO.version}"

# RFC 9110 token: what a header name may contain.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_AUTH_REJECTED = frozenset({401, 403})

log = structlog.get_logger("registry.gateway")


def build_auth_headers(
    *, authorization_type: AuthorizationType, key: str, custom_header: str | None
) -> dict[str, str]:
    """The headers that carry an upstream API key, in LibreChat's conventions.

    ``bearer`` → ``Authorization: Bearer <key>``; ``basic`` → ``Authorization: Basic <key>``
    (the key is used as given, not base64-encoded again); ``custom`` → ``<custom_header>: <key>``.

    Raises:
        InvalidRequestError: the key is empty or contains a line break, or ``custom`` has no
            valid header name. Messages never contain the key.
    """
    if not key or "\r" in key or "\n" in key:
        raise InvalidRequestError("The upstream API key must be a non-empty single line")
    if authorization_type == "bearer":
        return {"Authorization": f"Bearer {key}"}
    if authorization_type == "basic":
        return {"Authorization": f"Basic {key}"}
    if authorization_type == "custom":
        if not custom_header or not _HEADER_NAME.match(custom_header):
            raise InvalidRequestError(
                "authorization_type 'custom' needs a valid custom_header name"
            )
        return {custom_header: key}
    raise InvalidRequestError(f"Unknown authorization_type {authorization_type!r}")


@dataclass(frozen=True)
class DiscoveredTool:
    """One tool as the upstream listed it (JSON-able fields, camelCase keys as on the wire)."""

    name: str
    description: str | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, Any] | None
    """MCP annotations verbatim: ``readOnlyHint``, ``destructiveHint``, ``idempotentHint``,
    ``openWorldHint``, ``title``."""
    title: str | None


@dataclass(frozen=True)
class DiscoveryResult:
    """What ``initialize`` and a full ``tools/list`` returned."""

    capabilities: dict[str, Any]
    server_info: dict[str, Any]
    protocol_version: str
    tools: tuple[DiscoveredTool, ...]
    init_duration_ms: int
    """Wall time of connect + initialize + every tools/list page."""


def tool_function_name(tool: str, server_name: str) -> str:
    """LibreChat's key for an MCP tool: ``<tool>_mcp_<server>``."""
    return f"{tool}_mcp_{server_name}"


def to_tool_function(tool: DiscoveredTool, server_name: str) -> dict[str, Any]:
    """The tool in OpenAI function format, named by ``tool_function_name``."""
    function: dict[str, Any] = {"name": tool_function_name(tool.name, server_name)}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = tool.input_schema
    return {"type": "function", "function": function}


def display_url(url: str) -> str:
    """``url`` without userinfo, query string or fragment, fit for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def discover(
    *,
    url: str,
    transport: UpstreamTransport,
    headers: Mapping[str, str],
    timeout_seconds: float,
) -> DiscoveryResult:
    """Connect to an upstream MCP server, initialize, list all its tools and disconnect.

    ``timeout_seconds`` bounds the whole exchange, including closing the connection.

    Raises:
        InvalidRequestError: ``url`` is not an http(s) URL.
        UpstreamTimeoutError: the upstream did not finish within ``timeout_seconds``.
        UpstreamProtocolError: the upstream answered, but not with valid MCP.
        UpstreamError: the upstream could not be reached or refused the credentials.
    """
    safe_url = display_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError("The upstream URL must be an absolute http(s) URL")
    statuses: list[int] = []
    started = time.perf_counter()
    deadline = anyio.CancelScope(deadline=anyio.current_time() + timeout_seconds)
    result: DiscoveryResult | None = None
    try:
        with deadline:
            result = await _discover(
                url=url,
                transport=transport,
                headers=headers,
                timeout_seconds=timeout_seconds,
                statuses=statuses,
                started=started,
            )
    except BaseException as exc:
        error = _translate(
            exc,
            url=safe_url,
            timeout_seconds=timeout_seconds,
            statuses=statuses,
            deadline_passed=deadline.cancel_called,
        )
        if error is None:
            raise
        _log_failure(error, url=safe_url, transport=transport, started=started)
        raise error from exc
    if result is None:
        # The deadline cancelled the exchange and the scope swallowed that cancellation.
        error = UpstreamTimeoutError(f"Upstream did not answer within {timeout_seconds:g} s")
        _log_failure(error, url=safe_url, transport=transport, started=started)
        raise error
    log.info(
        "upstream_discovered",
        url=safe_url,
        transport=transport,
        tools=len(result.tools),
        duration_ms=result.init_duration_ms,
    )
    return result


async def _discover(
    *,
    url: str,
    transport: UpstreamTransport,
    headers: Mapping[str, str],
    timeout_seconds: float,
    statuses: list[int],
    started: float,
) -> DiscoveryResult:
    async with _open_session(
        url=url,
        transport=transport,
        headers=headers,
        timeout_seconds=timeout_seconds,
        statuses=statuses,
    ) as session:
        init = await session.initialize()
        tools = await _list_all_tools(session)
        duration_ms = _elapsed_ms(started)
    return _result(init, tools, duration_ms)


@asynccontextmanager
async def _open_session(
    *,
    url: str,
    transport: UpstreamTransport,
    headers: Mapping[str, str],
    timeout_seconds: float,
    statuses: list[int],
) -> AsyncIterator[ClientSession]:
    async def record_status(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            statuses.append(response.status_code)

    def make_client(
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers={"user-agent": DISCOVERY_USER_AGENT, **(headers or {})},
            timeout=timeout or httpx2.Timeout(timeout_seconds),
            auth=auth,
            event_hooks={"response": [record_status]},
        )

    if transport == "sse":
        async with (
            sse_client(
                url,
                headers=dict(headers),
                timeout=timeout_seconds,
                sse_read_timeout=timeout_seconds,
                httpx_client_factory=make_client,
            ) as (read, write),
            ClientSession(read, write, client_info=CLIENT_INFO) as session,
        ):
            yield session
        return
    # The SDK does not close a client it was given, so this block owns it.
    async with (
        make_client(headers=dict(headers)) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write, client_info=CLIENT_INFO) as session,
    ):
        yield session


async def _list_all_tools(session: ClientSession) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_TOOL_PAGES):
        params = PaginatedRequestParams(cursor=cursor) if cursor is not None else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools
        if cursor in seen:
            raise UpstreamProtocolError("Upstream repeated a tools/list cursor")
        seen.add(cursor)
    raise UpstreamProtocolError(f"Upstream listed more than {MAX_TOOL_PAGES} pages of tools")


def _result(init: InitializeResult, tools: list[Tool], duration_ms: int) -> DiscoveryResult:
    return DiscoveryResult(
        capabilities=init.capabilities.model_dump(by_alias=True, mode="json", exclude_none=True),
        server_info=init.server_info.model_dump(by_alias=True, mode="json", exclude_none=True),
        protocol_version=init.protocol_version,
        tools=tuple(_tool(tool) for tool in tools),
        init_duration_ms=duration_ms,
    )


def _tool(tool: Tool) -> DiscoveredTool:
    annotations = (
        tool.annotations.model_dump(by_alias=True, mode="json", exclude_none=True)
        if tool.annotations is not None
        else None
    )
    return DiscoveredTool(
        name=tool.name,
        description=tool.description,
        input_schema=dict(tool.input_schema),
        output_schema=dict(tool.output_schema) if tool.output_schema is not None else None,
        annotations=annotations,
        title=tool.title,
    )


def _log_failure(
    error: RegistryError, *, url: str, transport: UpstreamTransport, started: float
) -> None:
    log.info(
        "upstream_discovery_failed",
        url=url,
        transport=transport,
        error=error.code,
        duration_ms=_elapsed_ms(started),
    )


def _elapsed_ms(started: float) -> int:
    return max(1, round((time.perf_counter() - started) * 1000))


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups; the SDK runs on anyio task groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _translate(
    exc: BaseException,
    *,
    url: str,
    timeout_seconds: float,
    statuses: list[int],
    deadline_passed: bool,
) -> RegistryError | None:
    """The domain error for what the SDK raised, or None to re-raise it unchanged.

    Outside cancellation, interrupts and programming errors are not upstream failures and
    propagate unchanged.
    """
    leaves = _leaves(exc)
    if any(isinstance(leaf, KeyboardInterrupt | SystemExit) for leaf in leaves):
        return None
    if deadline_passed:
        return UpstreamTimeoutError(f"Upstream did not answer within {timeout_seconds:g} s")
    if any(not isinstance(leaf, Exception) for leaf in leaves):
        # Someone else cancelled us (asyncio.CancelledError): let it propagate.
        return None
    rejected = next((status for status in statuses if status in _AUTH_REJECTED), None)
    if rejected is not None:
        return UpstreamError(f"Upstream rejected the credentials (HTTP {rejected})")
    for leaf in leaves:
        if isinstance(leaf, RegistryError):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, TimeoutError | httpx2.TimeoutException):
            if isinstance(leaf, httpx2.ConnectTimeout):
                return UpstreamTimeoutError(f"Could not connect to upstream at {url} in time")
            return UpstreamTimeoutError(f"Upstream did not answer within {timeout_seconds:g} s")
    for leaf in leaves:
        if isinstance(leaf, httpx2.ConnectError | OSError):
            return UpstreamError(f"Could not connect to upstream at {url}")
    if statuses:
        return UpstreamError(f"Upstream answered HTTP {statuses[-1]}")
    for leaf in leaves:
        if isinstance(leaf, httpx2.HTTPStatusError):
            return UpstreamError(f"Upstream answered HTTP {leaf.response.status_code}")
        if isinstance(leaf, httpx2.RemoteProtocolError | httpx2.DecodingError):
            return UpstreamProtocolError("Upstream sent a malformed HTTP response")
        if isinstance(leaf, httpx2.TransportError):
            return UpstreamError(f"The connection to upstream at {url} failed")
        if isinstance(leaf, MCPError):
            if leaf.code == CONNECTION_CLOSED:
                return UpstreamError(f"Upstream at {url} closed the connection")
            # The upstream's own message may echo what it was sent; only the code is kept.
            return UpstreamProtocolError(f"Upstream answered with MCP error {leaf.code}")
        if isinstance(leaf, ValidationError | ValueError | RuntimeError):
            # Malformed results, unsupported protocol versions, bad SSE payloads.
            return UpstreamProtocolError("Upstream did not answer with valid MCP")
    return None
