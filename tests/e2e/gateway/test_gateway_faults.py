"""Upstream failures reach only the affected client, are recorded, and heal."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

import anyio
import httpx
import pytest
from bson import ObjectId
from mcp.shared.exceptions import MCPError

from registry.gateway.metrics import GATEWAY_CALLS
from tests.e2e.gateway.conftest import GatewayService, mcp_client
from tests.support import RunningUpstream, UpstreamSpec, wait_until
from tests.support.fixtures import UpstreamFactory
from tests.support.mcp_messages import ACCEPT, INITIALIZE_REQUEST, text_of
from tests.support.upstreams import Transport

pytestmark = pytest.mark.e2e


def call(tool: str, arguments: dict[str, object], request_id: int = 2) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


async def connection_state(service: GatewayService, server_id: str, headers: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=service.base_url, headers=headers) as http:
        response = await http.get("/api/v1/connections/status")
    assert response.status_code == 200
    (entry,) = [c for c in response.json()["connections"] if c["server_id"] == server_id]
    state: str = entry["connection_state"]
    return state


async def test_killed_upstream_errors_marks_server_and_recovers(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="fragile")
    server_id = await gateway_service.add_server("fragile", upstream.url)
    caller = gateway_service.caller()

    async with mcp_client(gateway_service.url("fragile"), caller) as session:
        first = await session.call_tool("echo", {"text": "before"})

        async def connected_recorded() -> bool:
            # lastConnected is written in the background, off the call path.
            return "lastConnected" in await gateway_service.server_doc(server_id)

        await wait_until(connected_recorded)
        assert await connection_state(gateway_service, server_id, caller.headers) == "connected"
        async with httpx.AsyncClient(base_url=gateway_service.base_url) as http:
            detail = await http.get(f"/api/v1/servers/{server_id}", headers=caller.headers)
        assert detail.json()["connectionState"] == "connected"

        upstream.stop()
        errors = []
        for _ in range(3):
            with pytest.raises(MCPError) as failed:
                await session.call_tool("echo", {"text": "during"})
            errors.append(failed.value.error.message)

        async def marked() -> bool:
            stored = await gateway_service.server_doc(server_id)
            return stored.get("status") == "error" and "lastError" in stored

        await wait_until(marked)
        failed_doc = await gateway_service.server_doc(server_id)
        assert await connection_state(gateway_service, server_id, caller.headers) == "error"

        upstream.restart()
        after = await session.call_tool("echo", {"text": "after"})

        async def recovered() -> bool:
            stored = await gateway_service.server_doc(server_id)
            return stored.get("status") == "active" and "lastError" not in stored

        await wait_until(recovered)
        assert await connection_state(gateway_service, server_id, caller.headers) == "connected"

    assert text_of(first.content[0]) == "before"
    assert errors[0] == (f"Could not connect to upstream 'fragile' at {upstream.url}")
    assert failed_doc["errorMessage"] == errors[-1]
    assert text_of(after.content[0]) == "after"


async def test_expired_upstream_session_is_reinitialized(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory()
    await gateway_service.add_server("expiring", upstream.url)

    async with mcp_client(gateway_service.url("expiring"), gateway_service.caller()) as session:
        await session.call_tool("echo", {"text": "one"})
        upstream_id = next(
            seen["mcp-session-id"] for seen in upstream.requests_seen if "mcp-session-id" in seen
        )
        async with httpx.AsyncClient() as http:
            ended = await http.delete(
                upstream.url,
                headers={"mcp-session-id": upstream_id, "mcp-protocol-version": "2025-11-25"},
            )
        assert ended.status_code == 200
        again = await session.call_tool("echo", {"text": "two"})

    assert text_of(again.content[0]) == "two"
    session_ids = {seen.get("mcp-session-id") for seen in upstream.relayed_requests_seen} - {None}
    assert len(session_ids) == 2


async def test_slow_upstream_times_out_for_that_client_only(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory()
    await gateway_service.add_server("sluggish", upstream.url, timeout_ms=300)
    caller = gateway_service.caller()

    async with (
        mcp_client(gateway_service.url("sluggish"), caller) as slow,
        mcp_client(gateway_service.url("sluggish"), gateway_service.caller()) as fast,
    ):
        with pytest.raises(MCPError) as timed_out:
            await slow.call_tool("slow_echo", {"text": "late", "seconds": 3})
        quick = await fast.call_tool("echo", {"text": "quick"})

    assert timed_out.value.error.message == "Upstream 'sluggish' did not answer within 0.3 s"
    assert text_of(quick.content[0]) == "quick"


@contextlib.contextmanager
def recording_upstream(transport: Transport) -> Iterator[tuple[RunningUpstream, list[str]]]:
    """An upstream with a tool ``long_task`` that records ``started``, then ``cancelled`` or
    ``finished`` (after 30 s) in the returned list."""
    upstream = RunningUpstream(UpstreamSpec(transport=transport, name="recorder"))
    events: list[str] = []

    @upstream.mcp.tool()
    async def long_task() -> str:
        """Work for 30 s unless cancelled."""
        events.append("started")
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            events.append("cancelled")
            raise
        events.append("finished")
        return "done"

    upstream.start()
    try:
        yield upstream, events
    finally:
        upstream.close()


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_client_disconnect_cancels_upstream_call(
    gateway_service: GatewayService, transport: Transport
) -> None:
    """Audit G1: a disconnect only closed the upstream connection, and the MCP specification
    says that is no cancellation: the upstream tool ran on to the end."""
    name = f"cancelled-{transport}"
    counter = GATEWAY_CALLS.labels(name, "tools/call", "_other", "client_disconnected")
    before = counter._value.get()

    with recording_upstream(transport) as (upstream, events):
        await gateway_service.add_server(name, upstream.url, transport=transport)
        headers = {**gateway_service.caller().headers, **ACCEPT}
        async with httpx.AsyncClient(headers=headers, timeout=30) as http:
            init = await http.post(gateway_service.url(name), json=INITIALIZE_REQUEST)
            session_headers = {"mcp-session-id": init.headers["mcp-session-id"]}
            await http.post(
                gateway_service.url(name),
                json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                headers=session_headers,
            )
            pending = asyncio.create_task(
                http.post(
                    gateway_service.url(name),
                    json=call("long_task", {}, request_id=42),
                    headers=session_headers,
                )
            )
            await wait_until(lambda: events == ["started"])
            pending.cancel()  # the client goes away: httpx closes its connection
            with contextlib.suppress(asyncio.CancelledError):
                await pending
            await wait_until(lambda: events == ["started", "cancelled"], timeout=10)

    await wait_until(lambda: counter._value.get() == before + 1)
    assert events == ["started", "cancelled"]


async def test_client_disconnect_on_combined_endpoint_cancels_upstream_call(
    gateway_service: GatewayService,
) -> None:
    """The combined /mcp endpoint ran a call on to the end once its client had gone."""
    with recording_upstream("streamable-http") as (upstream, events):
        server_id = await gateway_service.add_server("recorder", upstream.url)
        admin = gateway_service.admin.headers
        async with httpx.AsyncClient(base_url=gateway_service.base_url, headers=admin) as api:
            synced = await api.post(f"/api/v1/sync/servers/{server_id}")
        assert synced.json()["outcome"] == "success", synced.text
        combined = f"{gateway_service.base_url}/mcp"
        headers = {**gateway_service.caller().headers, **ACCEPT}
        async with httpx.AsyncClient(headers=headers, timeout=30) as http:
            init = await http.post(combined, json=INITIALIZE_REQUEST)
            session_headers = {"mcp-session-id": init.headers["mcp-session-id"]}
            pending = asyncio.create_task(
                http.post(
                    combined, json=call("long_task_mcp_recorder", {}), headers=session_headers
                )
            )
            await wait_until(lambda: events == ["started"])
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
            await wait_until(lambda: events == ["started", "cancelled"], timeout=10)

    assert events == ["started", "cancelled"]


async def test_big_result_streams_through(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory()
    await gateway_service.add_server("bulky", upstream.url)
    caller = gateway_service.caller()

    async with mcp_client(gateway_service.url("bulky"), caller) as session:
        # The SDK client refuses events over 1 MiB; 400 KiB (sent twice: content and
        # structuredContent) stays under that.
        result = await session.call_tool("big_result", {"size_kb": 400})
    headers = {**caller.headers, "accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        init = await http.post(gateway_service.url("bulky"), json=INITIALIZE_REQUEST)
        chunks = 0
        body = b""
        async with http.stream(
            "POST",
            gateway_service.url("bulky"),
            json=call("big_result", {"size_kb": 8192}),
            headers={"mcp-session-id": init.headers["mcp-session-id"]},
        ) as response:
            async for chunk in response.aiter_raw():
                chunks += 1
                body += chunk

    assert len(text_of(result.content[0])) == 400 * 1024
    data = b"".join(
        line.removeprefix(b"data: ") for line in body.split(b"\n") if line.startswith(b"data: ")
    )
    message = json.loads(data)
    assert len(message["result"]["content"][0]["text"]) == 8192 * 1024
    assert chunks > 1


async def test_upstream_error_does_not_touch_another_server(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    broken = upstream_factory()
    healthy = upstream_factory()
    await gateway_service.add_server("broken", broken.url)
    await gateway_service.add_server("healthy", healthy.url)
    broken.stop()
    caller = gateway_service.caller()

    async with httpx.AsyncClient(
        headers={**caller.headers, "accept": "application/json, text/event-stream"}
    ) as http:
        init = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        }
        down = await http.post(gateway_service.url("broken"), json=init)
    async with mcp_client(gateway_service.url("healthy"), caller) as session:
        fine = await session.call_tool("echo", {"text": "ok"})

    assert down.status_code == 200
    assert down.json()["id"] == 7
    assert down.json()["error"]["code"] == -32002
    assert text_of(fine.content[0]) == "ok"
    assert ObjectId.is_valid(caller.id)
