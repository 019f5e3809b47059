"""Legacy HTTP+SSE upstreams, bridged to Streamable HTTP clients."""

from __future__ import annotations

import pytest

from tests.e2e.gateway.conftest import GatewayService, mcp_client
from tests.support import DEFAULT_TOOLS
from tests.support.fixtures import UpstreamFactory
from tests.support.mcp_messages import raw_initialize, text_of

pytestmark = pytest.mark.e2e

KEY = "sk-sse-0123456789"


async def test_sse_upstream_round_trip_with_key(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(transport="sse", auth="custom", api_key=KEY, custom_header="X-Key")
    await gateway_service.add_server(
        "legacy",
        upstream.url,
        transport="sse",
        api_key={
            "key": KEY,
            "source": "admin",
            "authorization_type": "custom",
            "custom_header": "X-Key",
        },
    )
    caller = gateway_service.caller()

    async with mcp_client(gateway_service.url("legacy"), caller) as session:
        listed = await session.list_tools()
        echoed = await session.call_tool("echo", {"text": "bridged"})
        header = await session.call_tool("get_secret_header", {})
        added = await session.call_tool("add", {"a": 1, "b": 2})

    assert {tool.name for tool in listed.tools} == set(DEFAULT_TOOLS)
    assert text_of(echoed.content[0]) == "bridged"
    assert text_of(header.content[0]) == "x-key"
    assert text_of(added.content[0]) == "3"
    assert all(seen["x-key"] == KEY for seen in upstream.requests_seen)
    assert all(caller.token not in " ".join(seen.values()) for seen in upstream.requests_seen)


async def test_sse_upstream_restart_reinitializes(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(transport="sse")
    await gateway_service.add_server("phoenix", upstream.url, transport="sse")

    async with mcp_client(gateway_service.url("phoenix"), gateway_service.caller()) as session:
        await session.call_tool("echo", {"text": "one"})
        upstream.restart()
        again = await session.call_tool("echo", {"text": "two"})

    assert text_of(again.content[0]) == "two"
    streams = [
        seen for seen in upstream.relayed_requests_seen if seen.get("accept") == "text/event-stream"
    ]
    assert len(streams) == 2


async def test_sse_upstream_refusing_the_users_key_is_credential_rejected(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """The bridge answered a refused credential with -32003 (not -32011) and blamed no one."""
    upstream = upstream_factory(transport="sse", auth="bearer", api_key=KEY)
    await gateway_service.add_server(
        "legacy-own",
        upstream.url,
        transport="sse",
        scope="shared_user",
        api_key={"source": "user", "authorization_type": "bearer"},
    )
    caller = gateway_service.caller()
    await gateway_service.store_api_key(caller, "legacy-own", "not-the-key")

    refused = await raw_initialize(gateway_service.url("legacy-own"), caller.headers)

    assert refused.json()["error"] == {
        "code": -32011,
        "message": "Upstream 'legacy-own' rejected your stored credential (HTTP 401)",
    }
