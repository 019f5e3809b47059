from __future__ import annotations

import asyncio
import socket
import time
from typing import Literal

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from registry.errors import UpstreamError, UpstreamProtocolError, UpstreamTimeoutError
from registry.gateway import DiscoveryResult, build_auth_headers, discover
from tests.support import DEFAULT_TOOLS, serve_asgi, wait_until
from tests.support.fixtures import UpstreamFactory

pytestmark = pytest.mark.e2e

KEY = "sk-test-0123456789abcdef"
WRONG_KEY = "sk-wrong-fedcba9876543210"
TIMEOUT = 5.0


async def discover_at(
    url: str,
    *,
    transport: Literal["streamable-http", "sse"] = "streamable-http",
    headers: dict[str, str] | None = None,
    timeout_seconds: float = TIMEOUT,
) -> DiscoveryResult:
    return await discover(
        url=url, transport=transport, headers=headers or {}, timeout_seconds=timeout_seconds
    )


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def assert_secret_free(error: BaseException, *secrets: str) -> None:
    for text in (str(error), repr(error)):
        for secret in secrets:
            assert secret not in text


async def test_discover_streamable_http_lists_tools(upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(name="alpha")

    result = await discover_at(upstream.url)

    assert result.server_info == {"name": "alpha", "version": "1.0.0"}
    assert result.protocol_version == "2025-11-25"
    assert "tools" in result.capabilities
    assert result.init_duration_ms > 0
    tools = {tool.name: tool for tool in result.tools}
    assert set(tools) == set(DEFAULT_TOOLS)
    echo = tools["echo"]
    assert echo.description == "Return the text unchanged."
    assert echo.input_schema["properties"] == {"text": {"title": "Text", "type": "string"}}
    assert echo.input_schema["required"] == ["text"]
    assert echo.output_schema is not None
    assert echo.annotations == {"title": "Echo", "readOnlyHint": True}
    assert tools["delete_everything"].annotations == {"destructiveHint": True}
    assert tools["add"].annotations is None
    assert tools["add"].input_schema["required"] == ["a", "b"]


async def test_discover_sse_lists_tools(upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(transport="sse")
    assert upstream.url.endswith("/sse")

    result = await discover_at(upstream.url, transport="sse")

    assert {tool.name for tool in result.tools} == set(DEFAULT_TOOLS)
    assert "tools" in result.capabilities
    assert result.init_duration_ms > 0


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_discover_follows_pagination(
    upstream_factory: UpstreamFactory, transport: Literal["streamable-http", "sse"]
) -> None:
    upstream = upstream_factory(transport=transport, tools_page_size=2)
    upstream.add_tool("extra", "An extra tool", {"type": "object", "properties": {}})

    result = await discover_at(upstream.url, transport=transport)

    assert [tool.name for tool in result.tools] == [*DEFAULT_TOOLS, "extra"]
    assert result.tools[-1].input_schema == {"type": "object", "properties": {}}


async def test_discover_sees_tools_added_and_removed_at_runtime(
    upstream_factory: UpstreamFactory,
) -> None:
    upstream = upstream_factory()
    upstream.add_tool("search", "Search things")
    upstream.remove_tool("delete_everything")

    result = await discover_at(upstream.url)

    names = [tool.name for tool in result.tools]
    assert "search" in names
    assert "delete_everything" not in names


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        ("bearer", "authorization", f"Bearer {KEY}"),
        ("basic", "authorization", f"Basic {KEY}"),
        ("custom", "x-api-key", KEY),
    ],
)
@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_discover_with_the_right_key(
    upstream_factory: UpstreamFactory,
    transport: Literal["streamable-http", "sse"],
    auth: Literal["bearer", "basic", "custom"],
    header: str,
    value: str,
) -> None:
    upstream = upstream_factory(transport=transport, auth=auth, api_key=KEY)
    headers = build_auth_headers(authorization_type=auth, key=KEY, custom_header="X-API-Key")

    result = await discover_at(upstream.url, transport=transport, headers=headers)

    assert len(result.tools) == len(DEFAULT_TOOLS)
    assert upstream.requests_seen
    assert all(seen[header] == value for seen in upstream.requests_seen)
    if auth == "custom":
        assert all("authorization" not in seen for seen in upstream.requests_seen)


@pytest.mark.parametrize("auth", ["bearer", "basic", "custom"])
@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
@pytest.mark.parametrize("key", [WRONG_KEY, None])
async def test_discover_with_a_wrong_or_missing_key(
    upstream_factory: UpstreamFactory,
    transport: Literal["streamable-http", "sse"],
    auth: Literal["bearer", "basic", "custom"],
    key: str | None,
) -> None:
    upstream = upstream_factory(transport=transport, auth=auth, api_key=KEY)
    headers = (
        build_auth_headers(authorization_type=auth, key=key, custom_header="X-API-Key")
        if key
        else {}
    )

    with pytest.raises(UpstreamError) as caught:
        await discover_at(upstream.url, transport=transport, headers=headers)

    assert type(caught.value) is UpstreamError
    assert caught.value.message == "Upstream rejected the credentials (HTTP 401)"
    assert_secret_free(caught.value, KEY, WRONG_KEY)


async def test_discover_unreachable_port_fails_fast() -> None:
    port = closed_port()
    started = time.perf_counter()

    with pytest.raises(UpstreamError) as caught:
        await discover_at(f"http://user:hunter2@127.0.0.1:{port}/mcp?api_key={KEY}")

    assert time.perf_counter() - started < 2
    assert type(caught.value) is UpstreamError
    assert caught.value.message == f"Could not connect to upstream at http://127.0.0.1:{port}/mcp"
    assert_secret_free(caught.value, KEY, "hunter2")


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_discover_slow_upstream_times_out(
    upstream_factory: UpstreamFactory, transport: Literal["streamable-http", "sse"]
) -> None:
    upstream = upstream_factory(transport=transport, delay_seconds=3)
    started = time.perf_counter()

    with pytest.raises(UpstreamTimeoutError) as caught:
        await discover_at(upstream.url, transport=transport, timeout_seconds=0.5)

    assert time.perf_counter() - started < 1.2
    assert caught.value.message == "Upstream did not answer within 0.5 s"


async def test_discover_fails_while_stopped_and_works_after_restart(
    upstream_factory: UpstreamFactory,
) -> None:
    upstream = upstream_factory()
    await discover_at(upstream.url)
    port = upstream.port

    upstream.stop()
    with pytest.raises(UpstreamError, match="Could not connect"):
        await discover_at(upstream.url)

    upstream.restart()
    result = await discover_at(upstream.url)

    assert upstream.port == port
    assert len(result.tools) == len(DEFAULT_TOOLS)


async def test_discover_cancellation_propagates(upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(delay_seconds=3)
    task = asyncio.create_task(discover_at(upstream.url))
    await wait_until(lambda: upstream.requests_seen)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


async def test_discover_wrong_path_reports_http_status(upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory()

    with pytest.raises(UpstreamError) as caught:
        await discover_at(f"{upstream.base_url}/not-mcp")

    assert type(caught.value) is UpstreamError
    assert caught.value.message == "Upstream answered HTTP 404"


async def html_page(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]}
    )
    await send({"type": "http.response.body", "body": b"<html>not MCP</html>"})


async def json_garbage(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"hello": "world"}'})


@pytest.mark.parametrize(
    ("app", "code"),
    [(html_page, -32600), (json_garbage, -32700)],  # invalid request, parse error
    ids=["html", "json-garbage"],
)
async def test_discover_non_mcp_server_is_a_protocol_error(app: ASGIApp, code: int) -> None:
    with serve_asgi(app) as server, pytest.raises(UpstreamProtocolError) as caught:
        await discover_at(f"{server.base_url}/mcp")

    assert caught.value.message == f"Upstream answered with MCP error {code}"
