"""Who may reach which server through the gateway, and with whose credential."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from registry.gateway import policy
from tests.e2e.gateway.conftest import GatewayService, mcp_client
from tests.factories import Caller, make_caller
from tests.support.fixtures import UpstreamFactory
from tests.support.mcp_messages import ACCEPT, raw_initialize, text_of

pytestmark = pytest.mark.e2e

USER_KEY = {"source": "user", "authorization_type": "bearer"}


def leaves(group: BaseExceptionGroup[MCPError]) -> list[MCPError]:
    found: list[MCPError] = []
    for inner in group.exceptions:
        found.extend(leaves(inner) if isinstance(inner, BaseExceptionGroup) else [inner])
    return found


async def initialize_error(url: str, caller: Caller) -> MCPError:
    """The error an SDK client's initialize fails with (the SDK wraps it in a group)."""
    errors: list[MCPError] = []
    try:
        async with mcp_client(url, caller):
            pass
    except* MCPError as group:
        errors.extend(leaves(group))
    assert len(errors) == 1
    return errors[0]


async def test_private_server_of_another_user_is_not_found(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory()
    owner = gateway_service.caller()
    other = gateway_service.caller()
    await gateway_service.add_server("mine", upstream.url, scope="private_user", author=owner.id)

    denied = await raw_initialize(gateway_service.url("mine"), other.headers)
    allowed = await raw_initialize(gateway_service.url("mine"), owner.headers)

    assert denied.status_code == 404
    assert denied.json()["error"] == "not_found"
    assert denied.json()["message"] == "Server not found"
    assert allowed.status_code == 200
    assert len(upstream.requests_seen) == 1


async def test_unknown_server_and_missing_token(gateway_service: GatewayService) -> None:
    caller = gateway_service.caller()

    unknown = await raw_initialize(gateway_service.url("nope"), caller.headers)
    anonymous = await raw_initialize(gateway_service.url("nope"), {})

    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"
    assert anonymous.status_code == 401
    assert anonymous.json() == {
        "error": "unauthorized",
        "message": "Missing bearer token",
        "request_id": anonymous.headers["x-request-id"],
    }


async def test_toggled_off_server_is_forbidden(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory()
    await gateway_service.add_server("dormant", upstream.url, status="inactive")
    caller = gateway_service.caller()

    response = await raw_initialize(gateway_service.url("dormant"), caller.headers)

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert response.json()["message"] == (
        "Server 'dormant' is switched off (status inactive); an admin must enable it before "
        "it can be used"
    )
    assert upstream.requests_seen == []


async def test_token_scopes_must_include_the_gateway(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """A token narrowed to read:servers could still call every tool through the gateway."""
    upstream = upstream_factory()
    await gateway_service.add_server("scoped", upstream.url)
    settings = gateway_service.settings
    reader = make_caller(settings, scopes=("read:servers",))
    user = make_caller(settings, scopes=("read:servers", "use:gateway"))
    combined = f"{gateway_service.base_url}/mcp"

    direct_denied = await raw_initialize(gateway_service.url("scoped"), reader.headers)
    combined_denied = await raw_initialize(combined, reader.headers)
    reached_while_denied = list(upstream.requests_seen)
    async with mcp_client(gateway_service.url("scoped"), user) as session:
        echoed = await session.call_tool("echo", {"text": "scoped"})

    for denied in (direct_denied, combined_denied):
        assert denied.status_code == 403
        assert denied.json()["error"] == "forbidden"
        assert denied.json()["message"] == (
            "This token's scopes (read:servers) do not include use:gateway"
        )
    assert reached_while_denied == []
    assert text_of(echoed.content[0]) == "scoped"


async def test_unknown_session_is_not_found(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory()
    await gateway_service.add_server("alpha", upstream.url)
    alice, bob = gateway_service.caller(), gateway_service.caller()
    started = await raw_initialize(gateway_service.url("alpha"), alice.headers)
    session_id = started.headers["mcp-session-id"]
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}

    async with httpx.AsyncClient(headers=ACCEPT) as http:
        stolen = await http.post(
            gateway_service.url("alpha"),
            json=ping,
            headers={**bob.headers, "mcp-session-id": session_id},
        )
        invented = await http.post(
            gateway_service.url("alpha"),
            json=ping,
            headers={**alice.headers, "mcp-session-id": "x.unknown"},
        )
        own = await http.post(
            gateway_service.url("alpha"),
            json=ping,
            headers={**alice.headers, "mcp-session-id": session_id},
        )

    assert stolen.status_code == 404
    assert invented.status_code == 404
    assert invented.json()["message"] == (
        "Session not found or expired: send a new initialize request"
    )
    assert own.status_code == 200


async def test_user_credential_missing_then_used(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(auth="bearer", api_key="alice-key-123")
    await gateway_service.add_server("peruser", upstream.url, scope="shared_user", api_key=USER_KEY)
    alice, bob = gateway_service.caller(), gateway_service.caller()
    await gateway_service.store_api_key(alice, "peruser", "alice-key-123")

    refused = await initialize_error(gateway_service.url("peruser"), bob)
    async with mcp_client(gateway_service.url("peruser"), alice) as session:
        echoed = await session.call_tool("echo", {"text": "through"})

    assert refused.error.message == (
        "No credential stored for server 'peruser': store your API key with POST "
        '/api/v1/tokens {"type": "api_key", "identifier": "peruser", "token": "<your API key>"}'
    )
    assert text_of(echoed.content[0]) == "through"
    assert upstream.requests_seen
    assert all(seen["authorization"] == "Bearer alice-key-123" for seen in upstream.requests_seen)


async def test_concurrent_users_get_their_own_credentials(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory()
    await gateway_service.add_server("shared", upstream.url, scope="shared_user", api_key=USER_KEY)
    callers = [gateway_service.caller() for _ in range(4)]
    keys = {caller.id: f"key-of-{caller.id}" for caller in callers}
    for caller in callers:
        await gateway_service.store_api_key(caller, "shared", keys[caller.id])

    async def use(caller: Caller) -> list[str]:
        async with mcp_client(gateway_service.url("shared"), caller) as session:
            results = await asyncio.gather(
                *(session.call_tool("echo", {"text": f"{caller.id}-{i}"}) for i in range(5))
            )
        return [text_of(result.content[0]) for result in results]

    outputs = await asyncio.gather(*(use(caller) for caller in callers))

    for caller, texts in zip(callers, outputs, strict=True):
        assert texts == [f"{caller.id}-{i}" for i in range(5)]
    by_session: dict[str, set[str]] = {}
    for seen in upstream.requests_seen:
        if "mcp-session-id" in seen:
            by_session.setdefault(seen["mcp-session-id"], set()).add(seen["authorization"])
    assert len(by_session) == len(callers)
    assert all(len(auth) == 1 for auth in by_session.values())
    assert {auth.pop() for auth in by_session.values()} == {f"Bearer {k}" for k in keys.values()}


async def test_policy_hides_and_refuses_tools(
    gateway_service: GatewayService,
    upstream_factory: UpstreamFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def hide(*, user: Any, server: Any, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [tool for tool in tools if tool["name"] != "delete_everything"]

    async def deny(*, user: Any, server: Any, tool: str) -> str | None:
        return "Tool 'delete_everything' is not enabled" if tool == "delete_everything" else None

    monkeypatch.setattr(policy, "filter_tools", hide)
    monkeypatch.setattr(policy, "tool_denial", deny)
    upstream = upstream_factory()
    await gateway_service.add_server("governed", upstream.url)

    async with mcp_client(gateway_service.url("governed"), gateway_service.caller()) as session:
        listed = await session.list_tools()
        before = len(upstream.requests_seen)
        with pytest.raises(MCPError) as refused:
            await session.call_tool("delete_everything", {})
        after = len(upstream.requests_seen)

    assert "delete_everything" not in {tool.name for tool in listed.tools}
    assert "echo" in {tool.name for tool in listed.tools}
    assert refused.value.error.message == "Tool 'delete_everything' is not enabled"
    assert after == before
