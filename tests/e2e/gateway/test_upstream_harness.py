"""The upstream harness itself: what other gateway tests rely on it to do."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import ToolListChangedNotification

from registry.gateway import discover
from tests.support import DEFAULT_TOOLS, UpstreamSpec, start_upstream_process, wait_until
from tests.support.fixtures import UpstreamFactory
from tests.support.mcp_messages import text_of

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def session_at(
    url: str, *, headers: dict[str, str] | None = None, received: list[object] | None = None
) -> AsyncIterator[ClientSession]:
    async def on_message(message: IncomingMessage) -> None:
        if received is not None:
            received.append(message)

    async with (
        httpx2.AsyncClient(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        await session.initialize()
        yield session


async def test_tools_report_header_name_and_sizes(upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(auth="custom", api_key="k-1", custom_header="X-Token")

    async with session_at(upstream.url, headers={"X-Token": "k-1"}) as session:
        header = await session.call_tool("get_secret_header", {})
        big = await session.call_tool("big_result", {"size_kb": 64})
        added = await session.call_tool("add", {"a": 2, "b": 3})

    assert text_of(header.content[0]) == "x-token"
    assert len(text_of(big.content[0])) == 64 * 1024
    assert text_of(added.content[0]) == "5"
    assert all(seen["x-token"] == "k-1" for seen in upstream.requests_seen)


async def test_notify_tools_changed_reaches_connected_session(
    upstream_factory: UpstreamFactory,
) -> None:
    upstream = upstream_factory()
    received: list[object] = []

    async with session_at(upstream.url, received=received) as session:
        # The notification travels on the GET stream the client opens after initialize.
        await wait_until(lambda: any(seen.method == "GET" for seen in upstream.requests))
        upstream.add_tool("late", "Added later")
        upstream.notify_tools_changed()
        await wait_until(lambda: any(isinstance(m, ToolListChangedNotification) for m in received))
        tools = await session.list_tools()

    assert [tool.name for tool in tools.tools] == [*DEFAULT_TOOLS, "late"]


async def test_stop_drops_in_flight_call(upstream_factory: UpstreamFactory) -> None:
    """The dropped call fails fast; how it fails depends on where the SDK client notices.

    Under load the SDK sometimes reports the dropped connection as a transport ReadError out
    of its task group instead of an MCPError from call_tool (seen as a flaky failure).
    """
    upstream = upstream_factory()
    failures: list[BaseException] = []

    async def call_slow_tool(session: ClientSession) -> None:
        try:
            await session.call_tool("slow_echo", {"text": "a", "seconds": 30})
        except MCPError as exc:
            failures.append(exc)

    started = time.perf_counter()
    try:
        with anyio.fail_after(3):
            async with session_at(upstream.url) as session, anyio.create_task_group() as tasks:
                tasks.start_soon(call_slow_tool, session)
                # initialize, notifications/initialized, then the tools/call itself
                await wait_until(lambda: [r.method for r in upstream.requests].count("POST") == 3)
                upstream.stop()
    except* (httpx2.TransportError, MCPError) as group:
        failures.extend(group.exceptions)

    assert time.perf_counter() - started < 1
    assert failures
    assert not upstream.is_running


async def test_subprocess_upstream_serves_discovery() -> None:
    spec = UpstreamSpec(auth="bearer", api_key="k-2")
    with start_upstream_process(spec) as process:
        result = await discover(
            url=process.url,
            transport="streamable-http",
            headers={"Authorization": "Bearer k-2"},
            timeout_seconds=5,
        )

    assert {tool.name for tool in result.tools} == set(DEFAULT_TOOLS)
