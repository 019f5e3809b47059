"""A server switched off, set inactive or deleted stops being served at once, and colliding
combined names are offered for neither tool (real upstreams, the real mcp client)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.e2e.catalog.test_gateway_catalog import api, catalogued, posts
from tests.e2e.gateway.conftest import GatewayService, mcp_client
from tests.factories import Caller
from tests.support import DEFAULT_TOOLS
from tests.support.fixtures import UpstreamFactory
from tests.support.mcp_messages import text_of

pytestmark = pytest.mark.e2e

Mutation = Callable[[GatewayService, str], Awaitable[httpx.Response]]


async def toggle_off(svc: GatewayService, server_id: str) -> httpx.Response:
    return await api(svc, "POST", f"/api/v1/servers/{server_id}/toggle", json={"enabled": False})


async def patch_inactive(svc: GatewayService, server_id: str) -> httpx.Response:
    return await api(svc, "PATCH", f"/api/v1/servers/{server_id}", json={"status": "inactive"})


async def delete(svc: GatewayService, server_id: str) -> httpx.Response:
    return await api(svc, "DELETE", f"/api/v1/servers/{server_id}")


async def raw_post(url: str, caller: Caller, message: dict[str, Any]) -> httpx.Response:
    headers = {**caller.headers, "accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        return await http.post(url, json=message)


@pytest.mark.parametrize(
    ("mutate", "status", "direct_status"),
    [(toggle_off, 200, 403), (patch_inactive, 200, 403), (delete, 204, 404)],
    ids=["toggle", "patch-status", "delete"],
)
async def test_switched_off_server_not_served_by_next_request(
    gateway_service: GatewayService,
    upstream_factory: UpstreamFactory,
    mutate: Mutation,
    status: int,
    direct_status: int,
) -> None:
    """A toggled-off server kept exposing and relaying tools for up to 5 s (the gateway's
    server and visible-server caches were never told; docs/catalog.md said "at once")."""
    svc = gateway_service
    alpha = upstream_factory(name="alpha")
    beta = upstream_factory(name="beta")
    alpha_id = await catalogued(svc, "alpha", alpha.url)
    await catalogued(svc, "beta", beta.url)
    user = svc.caller()
    combined_url = f"{svc.base_url}/mcp"
    async with (
        mcp_client(svc.url("alpha"), user) as direct,
        mcp_client(combined_url, user) as combined,
    ):
        # Everything warm and cached: tools listed, upstream sessions open on both endpoints.
        direct_before = await direct.list_tools()
        combined_before = await combined.list_tools()
        await direct.call_tool("echo", {"text": "warm"})
        await combined.call_tool("echo_mcp_alpha", {"text": "warm"})
        relayed = posts(alpha)

        mutated = await mutate(svc, alpha_id)
        combined_after = await combined.list_tools()
        with pytest.raises(MCPError) as combined_call:
            await combined.call_tool("echo_mcp_alpha", {"text": "after"})
        with pytest.raises(MCPError):
            await direct.list_tools()
        with pytest.raises(MCPError):
            await direct.call_tool("echo", {"text": "after"})
        still = await combined.call_tool("echo_mcp_beta", {"text": "beta"})
    refused = await raw_post(
        svc.url("alpha"), user, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    )

    assert {tool.name for tool in direct_before.tools} == set(DEFAULT_TOOLS)
    assert "echo_mcp_alpha" in {tool.name for tool in combined_before.tools}
    assert mutated.status_code == status, mutated.text
    assert {tool.name for tool in combined_after.tools} == {
        f"{tool}_mcp_beta" for tool in DEFAULT_TOOLS
    }
    assert combined_call.value.error.code == -32012
    assert combined_call.value.error.message == "Tool 'echo_mcp_alpha' is not available to you"
    assert text_of(still.content[0]) == "beta"
    assert refused.status_code == direct_status
    assert posts(alpha) == relayed


async def test_toggled_back_on_server_served_by_next_request(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    svc = gateway_service
    alpha = upstream_factory(name="alpha")
    alpha_id = await catalogued(svc, "alpha", alpha.url)
    user = svc.caller()
    async with mcp_client(f"{svc.base_url}/mcp", user) as combined:
        await combined.list_tools()
        off = await toggle_off(svc, alpha_id)
        listed_off = await combined.list_tools()
        on = await api(svc, "POST", f"/api/v1/servers/{alpha_id}/toggle", json={"enabled": True})
        listed_on = await combined.list_tools()
        echoed = await combined.call_tool("echo_mcp_alpha", {"text": "back"})

    assert (off.status_code, on.status_code) == (200, 200)
    assert listed_off.tools == []
    assert {tool.name for tool in listed_on.tools} == {
        f"{tool}_mcp_alpha" for tool in DEFAULT_TOOLS
    }
    assert text_of(echoed.content[0]) == "back"


async def test_colliding_combined_names_neither_listed_nor_routed(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """``echo_mcp`` on ``delta`` and ``echo`` on ``mcp_delta`` both became
    ``echo_mcp_mcp_delta``: /mcp listed it once and routed calls to one of them silently."""
    svc = gateway_service
    delta = upstream_factory(name="delta")
    delta.add_tool("echo_mcp", "delta's own echo_mcp")
    mcp_delta = upstream_factory(name="mcp_delta")
    await catalogued(svc, "delta", delta.url)
    await catalogued(svc, "mcp_delta", mcp_delta.url)
    user = svc.caller()

    async with mcp_client(f"{svc.base_url}/mcp", user) as combined:
        listed = await combined.list_tools()
        before = (posts(delta), posts(mcp_delta))
        with pytest.raises(MCPError) as refused:
            await combined.call_tool("echo_mcp_mcp_delta", {"text": "which one?"})
        after = (posts(delta), posts(mcp_delta))
        added = await combined.call_tool("add_mcp_mcp_delta", {"a": 2, "b": 3})

    names = {tool.name for tool in listed.tools}
    assert "echo_mcp_mcp_delta" not in names
    assert {"echo_mcp_delta", "add_mcp_delta", "add_mcp_mcp_delta"} <= names
    assert refused.value.error.code == -32012
    assert after == before
    assert text_of(added.content[0]) == "5"


async def test_registered_server_served_at_once_after_a_cached_miss(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """A client that asked for /mcp/{name} before the server existed got 404 from the
    gateway's cache for up to 5 s after the server was registered."""
    svc = gateway_service
    upstream = upstream_factory(name="fresh")
    user = svc.caller()
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    before = await raw_post(svc.url("fresh"), user, initialize)

    registered = await api(
        svc,
        "POST",
        "/api/v1/servers",
        json={
            "serverName": "fresh",
            "type": "streamable-http",
            "url": upstream.url,
            "scope": "shared_app",
        },
    )
    async with mcp_client(svc.url("fresh"), user) as session:
        tools = await session.list_tools()

    assert before.status_code == 404
    assert registered.status_code == 201, registered.text
    assert {tool.name for tool in tools.tools} == set(DEFAULT_TOOLS)
