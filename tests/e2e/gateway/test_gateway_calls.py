"""Calls through /mcp/{server}: round trip, listing, credentials injected and never leaked."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.gateway.conftest import GatewayService, mcp_client
from tests.support import DEFAULT_TOOLS
from tests.support.fixtures import UpstreamFactory
from tests.support.mcp_messages import text_of

pytestmark = pytest.mark.e2e

KEY = "sk-upstream-0123456789abcdef"


async def test_tool_call_round_trip(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="alpha")
    await gateway_service.add_server("alpha", upstream.url)
    caller = gateway_service.caller()

    async with mcp_client(gateway_service.url("alpha"), caller) as session:
        listed = await session.list_tools()
        echoed = await session.call_tool("echo", {"text": "hello"})
        added = await session.call_tool("add", {"a": 2, "b": 40})

    assert {tool.name for tool in listed.tools} == set(DEFAULT_TOOLS)
    assert text_of(echoed.content[0]) == "hello"
    assert echoed.is_error is False
    assert text_of(added.content[0]) == "42"


@pytest.mark.parametrize(
    ("auth", "header"),
    [("bearer", "authorization"), ("basic", "authorization"), ("custom", "x-api-key")],
)
async def test_api_key_injected_per_authorization_type(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory, auth: str, header: str
) -> None:
    upstream = upstream_factory(auth=auth, api_key=KEY, custom_header="X-API-Key")
    api_key: dict[str, Any] = {"key": KEY, "source": "admin", "authorization_type": auth}
    if auth == "custom":
        api_key["custom_header"] = "X-API-Key"
    await gateway_service.add_server("keyed", upstream.url, api_key=api_key)
    caller = gateway_service.caller()

    async with mcp_client(gateway_service.url("keyed"), caller) as session:
        seen = await session.call_tool("get_secret_header", {})

    assert text_of(seen.content[0]) == header
    assert upstream.requests_seen
    expected = upstream.credential_headers()
    for request in upstream.requests_seen:
        for name, value in expected.items():
            assert request[name.lower()] == value
        # The client's JWT never travels upstream.
        assert caller.token not in " ".join(request.values())


async def test_upstream_key_never_reaches_client(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(auth="bearer", api_key=KEY)
    await gateway_service.add_server(
        "secretive",
        upstream.url,
        api_key={"key": KEY, "source": "admin", "authorization_type": "bearer"},
    )
    caller = gateway_service.caller()
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }
    accept = {"accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(headers={**caller.headers, **accept}) as http:
        response = await http.post(gateway_service.url("secretive"), json=init)
        session_id = response.headers["mcp-session-id"]
        call = await http.post(
            gateway_service.url("secretive"),
            json={
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "x"}},
            },
            headers={"mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"},
        )

    assert response.status_code == 200
    assert call.status_code == 200
    upstream_ids = {seen.get("mcp-session-id") for seen in upstream.requests_seen} - {None}
    assert session_id not in upstream_ids
    for answer in (response, call):
        assert KEY not in answer.text
        assert KEY not in " ".join(answer.headers.values())
