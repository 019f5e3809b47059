"""Every request to the gateway is logged and counted, refused ones and GET/DELETE included."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from registry.gateway.metrics import GATEWAY_CALLS
from tests.e2e.gateway.conftest import GatewayService
from tests.support import wait_until
from tests.support.fixtures import UpstreamFactory
from tests.support.mcp_messages import ACCEPT, INITIALIZE_REQUEST

pytestmark = pytest.mark.e2e

PING = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
CALL = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "echo"}}


def count(server: str, method: str, outcome: str, tool: str = "") -> float:
    value: float = GATEWAY_CALLS.labels(server, method, tool, outcome)._value.get()
    return value


async def test_refused_requests_are_logged_and_counted(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """Audit: 401/404/403/400 answers and GET/DELETE left no gateway_call line and no metric."""
    upstream = upstream_factory()
    owner, caller = gateway_service.caller(), gateway_service.caller()
    await gateway_service.add_server("seen", upstream.url)
    await gateway_service.add_server("off", upstream.url, status="inactive")
    await gateway_service.add_server("theirs", upstream.url, scope="private_user", author=owner.id)
    expected = {
        ("_unknown", "POST", "unauthorized", ""): 1,
        ("_unknown", "POST", "not_found", ""): 1,
        ("theirs", "POST", "not_found", ""): 1,
        ("off", "POST", "forbidden", ""): 1,
        ("seen", "tools/call", "bad_request", "_other"): 1,
        ("seen", "ping", "session_not_found", ""): 1,
        ("seen", "POST", "bad_request", ""): 1,
        ("seen", "GET", "ok", ""): 1,
        ("seen", "DELETE", "ok", ""): 1,
    }
    before = {key: count(*key[:3], tool=key[3]) for key in expected}

    with capture_logs() as logs:
        async with httpx.AsyncClient(headers={**ACCEPT, **caller.headers}, timeout=10) as http:

            async def status(name: str, **request: Any) -> int:
                response = await http.post(gateway_service.url(name), **request)
                return response.status_code

            statuses = [
                await status("seen", json=PING, headers={"authorization": ""}),
                await status("nowhere", json=PING),
                await status("theirs", json=PING),
                await status("off", json=PING),
                await status("seen", json=CALL),
                await status("seen", json=PING, headers={"mcp-session-id": "x.y"}),
                await status("seen", content=b"{not json"),
            ]
            init = await http.post(gateway_service.url("seen"), json=INITIALIZE_REQUEST)
            session = {"mcp-session-id": init.headers["mcp-session-id"]}
            async with http.stream("GET", gateway_service.url("seen"), headers=session) as stream:
                opened = stream.status_code
            await wait_until(
                lambda: count("seen", "GET", "ok") == before[("seen", "GET", "ok", "")] + 1
            )
            ended = await http.delete(gateway_service.url("seen"), headers=session)
            # The DELETE is recorded (metric, then log line) after its 200 went out: the client
            # may see the answer first.
            await wait_until(
                lambda: any(
                    entry["event"] == "gateway_call" and entry["method"] == "DELETE"
                    for entry in logs
                )
            )

    assert statuses == [401, 404, 404, 403, 400, 404, 400]
    assert (opened, ended.status_code) == (200, 200)
    for key, added in expected.items():
        assert count(*key[:3], tool=key[3]) == before[key] + added, key
    lines = [entry for entry in logs if entry["event"] == "gateway_call"]
    refused = [(line["server"], line["method"], line["outcome"]) for line in lines]
    assert ("seen", "POST", "unauthorized") in refused
    assert ("nowhere", "POST", "not_found") in refused
    assert ("seen", "DELETE", "ok") in refused
    assert all(caller.token not in str(line) for line in lines)
    anonymous = next(line for line in lines if line["outcome"] == "unauthorized")
    assert anonymous["user_id"] is None
    assert {line["user_id"] for line in lines} - {None} == {caller.id}
