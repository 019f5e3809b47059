"""Upstream answers that break inside a server-sent-events stream, or are not HTTP at all.

The upstream is ``tests.e2e.gateway.faulty`` (raw HTTP/1.1: the MCP SDK's servers never make
these mistakes); the client speaks raw HTTP to the gateway, to see exactly which bytes arrive.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from registry.gateway.metrics import GATEWAY_CALLS
from tests.e2e.gateway.conftest import GatewayService
from tests.e2e.gateway.faulty import Fault, faulty_upstream
from tests.support.mcp_messages import ACCEPT, INITIALIZE_REQUEST

pytestmark = pytest.mark.e2e

CALL = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "echo", "arguments": {"text": "x"}},
}


def sse_messages(body: bytes) -> list[dict[str, Any]]:
    """The JSON data of every event in an SSE body (fails on an unparsable event)."""
    messages = []
    for block in body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n\n"):
        data = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
        if data and b"".join(data):
            messages.append(json.loads(b"\n".join(data)))
    return messages


async def call_through(
    service: GatewayService,
    fault: Fault,
    *,
    user_key: str | None = None,
    message: dict[str, Any] = CALL,
) -> tuple[httpx.Response, list[tuple[str, str | None]]]:
    """Open a session on a ``fault`` upstream, send one ``message``; the raw response.

    With ``user_key`` the server takes each user's own key, and the caller stores that one.
    """
    caller = service.caller()
    async with faulty_upstream(fault) as upstream:
        name = f"faulty-{fault}"
        if user_key is None:
            await service.add_server(name, upstream.url)
        else:
            await service.add_server(
                name, upstream.url, api_key={"source": "user", "authorization_type": "bearer"}
            )
            await service.store_api_key(caller, name, user_key)
        headers = {**caller.headers, **ACCEPT}
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            url = service.url(f"faulty-{fault}")
            init = await http.post(url, json=INITIALIZE_REQUEST)
            assert init.status_code == 200, init.text
            response = await http.post(
                url, json=message, headers={"mcp-session-id": init.headers["mcp-session-id"]}
            )
        return response, upstream.requests


def calls(server: str, outcome: str) -> float:
    value: float = GATEWAY_CALLS.labels(server, "tools/call", "_other", outcome)._value.get()
    return value


async def test_drop_mid_event_sends_no_partial_event(gateway_service: GatewayService) -> None:
    """Audit G3: the partial event was relayed, then ``\\n\\n`` made it a corrupt event."""
    before = calls("faulty-drop_mid_event", "upstream_dropped")

    response, _ = await call_through(gateway_service, "drop_mid_event")

    assert response.status_code == 200
    assert b'"res' not in response.content
    messages = sse_messages(response.content)
    assert [m.get("method") for m in messages] == ["notifications/message", None]
    assert messages[1]["id"] == 2
    assert messages[1]["error"] == {
        "code": -32000,
        "message": "Upstream 'faulty-drop_mid_event' closed the connection before answering "
        "completely",
    }
    assert calls("faulty-drop_mid_event", "upstream_dropped") == before + 1


async def test_stream_ending_without_the_response_is_dropped(
    gateway_service: GatewayService,
) -> None:
    """Audit G2: a stream that ended cleanly after a notification was counted as success."""
    before = calls("faulty-notification_then_end", "upstream_dropped")

    response, _ = await call_through(gateway_service, "notification_then_end")

    messages = sse_messages(response.content)
    assert [m.get("method") for m in messages] == ["notifications/message", None]
    assert messages[1]["error"] == {
        "code": -32000,
        "message": "Upstream 'faulty-notification_then_end' ended the stream without answering",
    }
    assert calls("faulty-notification_then_end", "upstream_dropped") == before + 1


async def test_tools_list_stream_without_the_response_is_dropped(
    gateway_service: GatewayService,
) -> None:
    """Audit G2, ``tools/list`` (filtered by the policy, so read whole): any event counted as
    the answer, so a lone notification was returned as the tool list."""
    response, _ = await call_through(
        gateway_service,
        "notification_then_end",
        message={"jsonrpc": "2.0", "id": 5, "method": "tools/list"},
    )

    assert response.json() == {
        "jsonrpc": "2.0",
        "id": 5,
        "error": {
            "code": -32000,
            "message": "Upstream 'faulty-notification_then_end' ended the stream without answering",
        },
    }


async def test_garbage_event_is_an_invalid_response(gateway_service: GatewayService) -> None:
    """Audit G4: ``data: {{{garbage`` inside an event passed through and counted as ok."""
    before = calls("faulty-garbage_event", "invalid_response")

    response, _ = await call_through(gateway_service, "garbage_event")

    assert b"{{{" not in response.content
    assert sse_messages(response.content) == [
        {
            "jsonrpc": "2.0",
            "id": 2,
            "error": {
                "code": -32003,
                "message": "Upstream 'faulty-garbage_event' answered with something that is "
                "not JSON-RPC",
            },
        }
    ]
    assert calls("faulty-garbage_event", "invalid_response") == before + 1


async def test_upstream_answering_not_http_is_an_invalid_response(
    gateway_service: GatewayService,
) -> None:
    """Audit: bytes that are not HTTP were reported as -32002 "connection failed"."""
    before = calls("faulty-not_http", "invalid_response")

    response, _ = await call_through(gateway_service, "not_http")

    assert response.status_code == 200
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": 2,
        "error": {
            "code": -32003,
            "message": "Upstream 'faulty-not_http' answered with something that is not HTTP",
        },
    }
    assert calls("faulty-not_http", "invalid_response") == before + 1


async def test_answer_split_across_chunks_arrives_whole(gateway_service: GatewayService) -> None:
    before = calls("faulty-split_answer", "ok")

    response, requests = await call_through(gateway_service, "split_answer")

    assert sse_messages(response.content) == [
        {"jsonrpc": "2.0", "id": 2, "result": {"content": []}}
    ]
    assert response.content.endswith(b"\r\n\r\n")
    assert ("POST", "tools/call") in requests
    assert calls("faulty-split_answer", "ok") == before + 1


async def test_cr_line_ends_answer_tools_call(gateway_service: GatewayService) -> None:
    """Review: SSE lets a lone CR end a line; the relay's two parsers disagreed on it."""
    before = calls("faulty-cr_answer", "ok")

    response, _ = await call_through(gateway_service, "cr_answer")

    assert response.status_code == 200
    assert response.content.endswith(b"\r\r")
    messages = sse_messages(response.content)
    assert [m.get("method") for m in messages] == ["notifications/message", None]
    assert messages[1] == {"jsonrpc": "2.0", "id": 2, "result": {"content": []}}
    assert calls("faulty-cr_answer", "ok") == before + 1


async def test_cr_line_ends_answer_tools_list(gateway_service: GatewayService) -> None:
    """Review: with lone-CR line ends ``tools/list`` (read whole for the policy) failed as
    "ended the stream without answering" while ``tools/call`` worked."""
    response, _ = await call_through(
        gateway_service,
        "cr_answer",
        message={"jsonrpc": "2.0", "id": 5, "method": "tools/list"},
    )

    assert response.status_code == 200
    messages = sse_messages(response.content)
    assert [m.get("method") for m in messages] == ["notifications/message", None]
    assert messages[1] == {"jsonrpc": "2.0", "id": 5, "result": {"tools": []}}


async def test_refused_reinitialize_names_the_users_credential(
    gateway_service: GatewayService,
) -> None:
    """Audit: a refused re-initialise always blamed "the server's configured credential"."""
    response, requests = await call_through(
        gateway_service, "session_lost_then_refused", user_key="sk-user-0123456789"
    )

    assert response.json()["error"] == {
        "code": -32011,
        "message": "Upstream 'faulty-session_lost_then_refused' rejected your stored credential "
        "(HTTP 401)",
    }
    assert requests == [
        ("POST", "initialize"),
        ("POST", "tools/call"),
        ("POST", "initialize"),
    ]
