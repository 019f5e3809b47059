"""Catalog governance through the gateway, with the real mcp client: /mcp/{server} and /mcp."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bson import ObjectId
from mcp.shared.exceptions import MCPError
from mcp.types import ToolListChangedNotification

from tests.e2e.gateway.conftest import GatewayService, mcp_client
from tests.factories import Caller, make_caller
from tests.support import DEFAULT_TOOLS, RunningUpstream, wait_until
from tests.support.fixtures import UpstreamFactory
from tests.support.mcp_messages import text_of

pytestmark = pytest.mark.e2e


def posts(upstream: RunningUpstream) -> int:
    """POSTs the upstream received (the client's GET stream may open at any time)."""
    return sum(1 for request in upstream.requests if request.method == "POST")


async def api(
    svc: GatewayService, method: str, path: str, caller: Caller | None = None, **kwargs: Any
) -> httpx.Response:
    headers = (caller or svc.admin).headers
    async with httpx.AsyncClient(base_url=svc.base_url, headers=headers, timeout=10) as http:
        return await http.request(method, path, **kwargs)


async def catalogued(svc: GatewayService, name: str, url: str, **fields: Any) -> str:
    """Insert a server and sync its catalog through the API; returns the server id."""
    server_id = await svc.add_server(name, url, **fields)
    response = await api(svc, "POST", f"/api/v1/sync/servers/{server_id}")
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "success", response.json()
    return server_id


async def govern(svc: GatewayService, server_id: str, tool: str, body: dict[str, Any]) -> None:
    listed = await api(
        svc,
        "GET",
        "/api/v1/tools",
        params={"server_id": server_id, "include_disabled": "true", "per_page": 100},
    )
    ids = {entry["name"]: entry["id"] for entry in listed.json()["tools"]}
    response = await api(svc, "PATCH", f"/api/v1/tools/{ids[tool]}", json=body)
    assert response.status_code == 200, response.text


async def names_via(url: str, caller: Caller) -> set[str]:
    async with mcp_client(url, caller) as session:
        listed = await session.list_tools()
    return {tool.name for tool in listed.tools}


async def test_disabled_tool_hidden_and_call_refused_without_upstream(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="alpha")
    server_id = await catalogued(gateway_service, "alpha", upstream.url)
    user = gateway_service.caller()
    assert "echo" in await names_via(gateway_service.url("alpha"), user)

    await govern(gateway_service, server_id, "echo", {"exposureState": "disabled"})

    async with mcp_client(gateway_service.url("alpha"), user) as session:
        listed = await session.list_tools()
        before = posts(upstream)
        with pytest.raises(MCPError) as refused:
            await session.call_tool("echo", {"text": "hi"})
        after = posts(upstream)
        still = await session.call_tool("add", {"a": 1, "b": 2})
    assert {tool.name for tool in listed.tools} == set(DEFAULT_TOOLS) - {"echo"}
    assert refused.value.error.code == -32012
    assert refused.value.error.message == "Tool 'echo' is not available on server 'alpha'"
    assert after == before
    assert text_of(still.content[0]) == "3"


async def test_call_arguments_validated_against_stored_schema(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="alpha")
    await catalogued(gateway_service, "alpha", upstream.url)

    async with mcp_client(gateway_service.url("alpha"), gateway_service.caller()) as session:
        await session.list_tools()
        before = posts(upstream)
        with pytest.raises(MCPError) as missing:
            await session.call_tool("add", {"a": 1})
        with pytest.raises(MCPError) as wrong:
            await session.call_tool("add", {"a": "one", "b": 2})
        after = posts(upstream)

    assert missing.value.error.code == -32602
    assert missing.value.error.message == (
        "Invalid arguments for tool 'add': missing required field 'b'"
    )
    assert wrong.value.error.code == -32602
    assert wrong.value.error.message == (
        "Invalid arguments for tool 'add': field 'a' must be of type integer"
    )
    assert after == before


async def test_human_approval_required_tool_refused(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="alpha")
    server_id = await catalogued(gateway_service, "alpha", upstream.url)
    await govern(
        gateway_service, server_id, "echo", {"metadata": {"human_approval_required": True}}
    )

    async with mcp_client(gateway_service.url("alpha"), gateway_service.caller()) as session:
        with pytest.raises(MCPError) as refused:
            await session.call_tool("echo", {"text": "hi"})

    assert "requires human approval" in refused.value.error.message


async def test_destructive_call_flagged_in_audit(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="alpha")
    await catalogued(gateway_service, "alpha", upstream.url)
    user = gateway_service.caller()
    audit = gateway_service.servers.database["audit_logs"]

    async with mcp_client(gateway_service.url("alpha"), user) as session:
        result = await session.call_tool("delete_everything", {})
        await session.call_tool("echo", {"text": "harmless"})

    assert text_of(result.content[0]) == "nothing was deleted"
    found: list[dict[str, Any]] = []

    async def poll() -> bool:
        found[:] = await audit.find({"action": "tool_call_destructive"}).to_list()
        return bool(found)

    await wait_until(poll)
    assert len(found) == 1
    assert found[0]["user_id"] == ObjectId(user.id)
    assert found[0]["changes"]["after"] == {"server": "alpha", "tool": "delete_everything"}
    assert "arguments" not in str(found[0])


async def test_role_and_group_visibility_through_server_endpoint(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="alpha")
    server_id = await catalogued(gateway_service, "alpha", upstream.url)
    await govern(gateway_service, server_id, "add", {"allowedGroups": ["finance"]})
    await govern(gateway_service, server_id, "big_result", {"allowedRoles": ["admin"]})
    settings = gateway_service.settings
    finance = make_caller(settings, groups=("finance",))
    plain = make_caller(settings)
    admin = make_caller(settings, role="admin")
    url = gateway_service.url("alpha")

    assert await names_via(url, finance) == set(DEFAULT_TOOLS) - {"big_result"}
    assert await names_via(url, plain) == set(DEFAULT_TOOLS) - {"big_result", "add"}
    assert await names_via(url, admin) == set(DEFAULT_TOOLS)
    async with mcp_client(url, plain) as session:
        with pytest.raises(MCPError):
            await session.call_tool("add", {"a": 1, "b": 2})
    async with mcp_client(url, finance) as session:
        added = await session.call_tool("add", {"a": 1, "b": 2})
    assert text_of(added.content[0]) == "3"


async def test_tool_added_upstream_appears_after_list_changed(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """The upstream's notifications/tools/list_changed, seen by the gateway on the client's
    event stream, syncs the catalog: no manual sync and no tools/list in between."""
    upstream = upstream_factory(name="alpha")
    await catalogued(gateway_service, "alpha", upstream.url)
    user = gateway_service.caller()
    received: list[object] = []

    async def collect(message: object) -> None:
        received.append(message)

    async with mcp_client(gateway_service.url("alpha"), user, message_handler=collect) as session:
        first = {tool.name for tool in (await session.list_tools()).tools}
        # The SDK client opens its GET event stream after initialize; wait until it is up.
        await wait_until(lambda: _has_get_stream(upstream))
        upstream.add_tool("get_weather", "Weather now.")
        upstream.notify_tools_changed()

        async def catalogued_now() -> bool:
            # Wait for the whole sync run that added the tool, not just the tool row: the
            # gateway's exposed-tool cache is invalidated when the run finishes (waiting on the
            # row alone made this test flaky), and an earlier list_changed run may exist.
            response = await api(gateway_service, "GET", "/api/v1/sync/runs")
            runs: list[dict[str, Any]] = response.json()["sync_runs"]
            return any(
                run["trigger"] == "list_changed"
                and run["outcome"] == "success"
                and run["counts"]["added"] == 1
                for run in runs
            )

        await wait_until(catalogued_now, timeout=10)
        # The gateway relays the notification to the client on its GET event stream too.
        await wait_until(lambda: any(isinstance(m, ToolListChangedNotification) for m in received))
        listed = {tool.name for tool in (await session.list_tools()).tools}
        weather = await session.call_tool("get_weather", {})

    assert "get_weather" not in first
    assert "get_weather" in listed
    assert text_of(weather.content[0]) == "get_weather"
    runs = await api(gateway_service, "GET", "/api/v1/sync/runs")
    latest = runs.json()["sync_runs"][0]
    assert (latest["trigger"], latest["outcome"]) == ("list_changed", "success")
    assert latest["counts"]["added"] == 1


async def _has_get_stream(upstream: RunningUpstream) -> bool:
    return any(request.method == "GET" for request in upstream.requests)


async def test_combined_endpoint_shows_each_user_exactly_their_tools(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    svc = gateway_service
    settings = svc.settings
    alice = make_caller(settings, groups=("finance",))
    bob = make_caller(settings)
    alpha = upstream_factory(name="alpha")
    beta = upstream_factory(name="beta")
    gamma = upstream_factory(name="gamma")
    await catalogued(svc, "alpha", alpha.url)
    beta_id = await catalogued(svc, "beta", beta.url)
    await catalogued(svc, "gamma", gamma.url, scope="private_user", author=alice.id)
    await govern(svc, beta_id, "add", {"allowedGroups": ["finance"]})
    await govern(svc, beta_id, "big_result", {"exposureState": "disabled"})
    combined = f"{svc.base_url}/mcp"

    alice_tools = await names_via(combined, alice)
    bob_tools = await names_via(combined, bob)

    every = {f"{tool}_mcp_{server}" for tool in DEFAULT_TOOLS for server in ("alpha", "beta")}
    every -= {"big_result_mcp_beta"}
    assert alice_tools == every | {f"{tool}_mcp_gamma" for tool in DEFAULT_TOOLS}
    assert bob_tools == every - {"add_mcp_beta"}

    async with mcp_client(combined, alice) as session:
        added = await session.call_tool("add_mcp_beta", {"a": 40, "b": 2})
        echoed = await session.call_tool("echo_mcp_gamma", {"text": "mine"})
        with pytest.raises(MCPError) as invalid:
            await session.call_tool("add_mcp_alpha", {"a": 1})
    async with mcp_client(combined, bob) as session:
        with pytest.raises(MCPError) as hidden:
            await session.call_tool("echo_mcp_gamma", {"text": "not yours"})
        with pytest.raises(MCPError) as restricted:
            await session.call_tool("add_mcp_beta", {"a": 1, "b": 2})
        echoed_bob = await session.call_tool("echo_mcp_alpha", {"text": "shared"})

    assert text_of(added.content[0]) == "42"
    assert text_of(echoed.content[0]) == "mine"
    assert text_of(echoed_bob.content[0]) == "shared"
    assert invalid.value.error.code == -32602
    assert hidden.value.error.message == "Tool 'echo_mcp_gamma' is not available to you"
    assert restricted.value.error.message == "Tool 'add_mcp_beta' is not available to you"


async def test_uncatalogued_server_relayed_but_absent_from_combined(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """A server the catalog has never synced (written by the external app) is relayed as the
    default exposure (active) would govern it; the combined server lists catalog tools only,
    and the first ``tools/list`` through the gateway gets the server catalogued."""
    upstream = upstream_factory(name="legacy")
    await gateway_service.add_server("legacy", upstream.url)
    user = gateway_service.caller()
    combined_url = f"{gateway_service.base_url}/mcp"

    combined_before = await names_via(combined_url, user)
    direct = await names_via(gateway_service.url("legacy"), user)

    async def catalogued_now() -> bool:
        return bool(await names_via(combined_url, user))

    await wait_until(catalogued_now, timeout=10)
    combined_after = await names_via(combined_url, user)

    assert combined_before == set()
    assert direct == set(DEFAULT_TOOLS)
    assert combined_after == {f"{name}_mcp_legacy" for name in DEFAULT_TOOLS}


async def test_combined_endpoint_answers_exact_path_without_redirect(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="alpha")
    await catalogued(gateway_service, "alpha", upstream.url)
    user = gateway_service.caller()
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }
    url = f"{gateway_service.base_url}/mcp"
    accept = {"accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(headers={**user.headers, **accept}) as http:
        initialized = await http.post(url, json=init)
        session = {"mcp-session-id": initialized.headers.get("mcp-session-id", "")}
        listed = await http.post(
            url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=session
        )
        unknown = await http.post(
            url, json={"jsonrpc": "2.0", "id": 3, "method": "prompts/list"}, headers=session
        )
        stream = await http.get(url, headers=session)
        ended = await http.delete(url, headers=session)
        after = await http.post(
            url, json={"jsonrpc": "2.0", "id": 4, "method": "tools/list"}, headers=session
        )
        anonymous = await http.post(url, json=init, headers={"authorization": ""})

    assert initialized.status_code == 200
    result = initialized.json()["result"]
    assert result["protocolVersion"] == "2025-06-18"
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"]["name"] == "mcp-gateway-registry"
    assert listed.status_code == 200
    tools = {tool["name"]: tool for tool in listed.json()["result"]["tools"]}
    assert set(tools) == {f"{tool}_mcp_alpha" for tool in DEFAULT_TOOLS}
    assert tools["add_mcp_alpha"]["inputSchema"]["required"] == ["a", "b"]
    assert unknown.json()["error"]["code"] == -32601
    assert stream.status_code == 405
    assert ended.status_code == 200
    assert after.status_code == 404
    assert anonymous.status_code == 401
