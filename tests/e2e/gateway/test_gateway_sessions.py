"""Ending gateway sessions (DELETE, eviction) and credential changes seen by the gateway at once.

The service here re-reads servers on every request (``REGISTRY_GATEWAY_SERVER_CACHE_SECONDS``
0) so a toggle takes effect immediately, and keeps at most two sessions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from mcp.shared.exceptions import MCPError

from registry.config import Settings
from registry.gateway.metrics import GATEWAY_SESSIONS
from tests.conftest import make_settings
from tests.e2e.gateway.conftest import GatewayService, mcp_client
from tests.factories import Caller
from tests.support import RunningUpstream, wait_until
from tests.support.fixtures import UpstreamFactory
from tests.support.mcp_messages import ACCEPT, INITIALIZE_REQUEST, text_of

pytestmark = pytest.mark.e2e

USER_KEY = {"source": "user", "authorization_type": "bearer"}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
PING = {"jsonrpc": "2.0", "id": 9, "method": "ping"}


@pytest.fixture
def settings(mongo_uri: str, db_name: str, tmp_path: Path) -> Settings:
    return make_settings(
        mongo_uri=mongo_uri,
        db_name=db_name,
        data_dir=tmp_path,
        gateway_server_cache_seconds=0,
        gateway_max_sessions=2,
    )


async def open_session(service: GatewayService, name: str, caller: Caller) -> dict[str, str]:
    """A raw gateway session on ``name`` (initialize + initialized); its headers."""
    headers = {**caller.headers, **ACCEPT}
    async with httpx.AsyncClient(headers=headers) as http:
        init = await http.post(service.url(name), json=INITIALIZE_REQUEST)
        assert init.status_code == 200, init.text
        session = {**headers, "mcp-session-id": init.headers["mcp-session-id"]}
        done = await http.post(service.url(name), json=INITIALIZED, headers=session)
        assert done.status_code == 202
    return session


async def send(service: GatewayService, name: str, method: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.request(method, service.url(name), **kwargs)


def upstream_deletes(upstream: RunningUpstream) -> list[str]:
    """The upstream session ids the upstream was asked to DELETE."""
    return [seen.headers["mcp-session-id"] for seen in upstream.requests if seen.method == "DELETE"]


def upstream_session_of(upstream: RunningUpstream, count: int) -> str:
    """The upstream session id of the ``count``-th session that sent a request with one."""
    ids = [
        seen.headers["mcp-session-id"]
        for seen in upstream.requests
        if seen.method == "POST" and "mcp-session-id" in seen.headers
    ]
    return list(dict.fromkeys(ids))[count - 1]


def sessions_counted(server: str, outcome: str) -> float:
    value: float = GATEWAY_SESSIONS.labels(server, outcome)._value.get()
    return value


async def test_delete_ends_the_session_here_and_upstream(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory()
    await gateway_service.add_server("ending", upstream.url)
    session = await open_session(gateway_service, "ending", gateway_service.caller())
    upstream_id = upstream_session_of(upstream, 1)

    ended = await send(gateway_service, "ending", "DELETE", headers=session)
    await wait_until(lambda: upstream_deletes(upstream) == [upstream_id])
    after = await send(gateway_service, "ending", "POST", json=PING, headers=session)

    assert ended.status_code == 200
    assert after.status_code == 404


async def test_owner_ends_session_of_a_switched_off_server(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """Audit G5: DELETE answered 403 once the server was switched off, so the client could
    not end its session; the upstream must not be contacted for it either."""
    upstream = upstream_factory()
    server_id = await gateway_service.add_server("dimmed", upstream.url)
    session = await open_session(gateway_service, "dimmed", gateway_service.caller())
    skipped = sessions_counted("dimmed", "upstream_end_skipped")
    await gateway_service.servers.update_one(
        {"_id": ObjectId(server_id)}, {"$set": {"status": "inactive"}}
    )

    ended = await send(gateway_service, "dimmed", "DELETE", headers=session)
    await wait_until(lambda: sessions_counted("dimmed", "upstream_end_skipped") == skipped + 1)
    after = await send(gateway_service, "dimmed", "POST", json=PING, headers=session)

    assert ended.status_code == 200
    assert after.status_code == 403  # the server is off; the session would be 404 anyway
    assert upstream_deletes(upstream) == []


async def test_only_the_owner_may_end_a_session(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory()
    await gateway_service.add_server("guarded", upstream.url)
    alice, bob = gateway_service.caller(), gateway_service.caller()
    session = await open_session(gateway_service, "guarded", alice)

    stolen = await send(
        gateway_service,
        "guarded",
        "DELETE",
        headers={**session, "authorization": f"Bearer {bob.token}"},
    )
    anonymous = await send(
        gateway_service,
        "guarded",
        "DELETE",
        headers={"mcp-session-id": session["mcp-session-id"]},
    )
    other_path = await send(gateway_service, "elsewhere", "DELETE", headers=session)
    still = await send(gateway_service, "guarded", "POST", json=PING, headers=session)

    assert stolen.status_code == 404
    assert anonymous.status_code == 401
    assert other_path.status_code == 404
    assert still.status_code == 200
    assert upstream_deletes(upstream) == []


async def test_evicted_session_is_ended_upstream(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """Audit: sessions that expired or were evicted were forgotten here but left open
    upstream (only SSE bridges were closed)."""
    upstream = upstream_factory()
    await gateway_service.add_server("crowded", upstream.url)
    caller = gateway_service.caller()
    first = await open_session(gateway_service, "crowded", caller)
    await open_session(gateway_service, "crowded", caller)
    first_upstream = upstream_session_of(upstream, 1)

    await open_session(gateway_service, "crowded", caller)  # at most two: the first goes
    await wait_until(lambda: upstream_deletes(upstream) == [first_upstream])
    gone = await send(gateway_service, "crowded", "POST", json=PING, headers=first)

    assert gone.status_code == 404


async def store_key(service: GatewayService, caller: Caller, server: str, key: str) -> str:
    async with httpx.AsyncClient(base_url=service.base_url, headers=caller.headers) as http:
        response = await http.post(
            "/api/v1/tokens", json={"type": "api_key", "identifier": server, "token": key}
        )
    assert response.status_code == 201, response.text
    token_id: str = response.json()["id"]
    return token_id


async def delete_key(service: GatewayService, caller: Caller, token_id: str) -> None:
    async with httpx.AsyncClient(base_url=service.base_url, headers=caller.headers) as http:
        response = await http.delete(f"/api/v1/tokens/{token_id}")
    assert response.status_code == 204, response.text


async def test_deleted_credential_stops_working_at_once(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """Audit G5: a deleted credential kept working for up to 30 s (the gateway's cache was
    only dropped when the upstream refused the credential)."""
    upstream = upstream_factory(auth="bearer", api_key="alice-key-1")
    await gateway_service.add_server("own", upstream.url, scope="shared_user", api_key=USER_KEY)
    alice = gateway_service.caller()
    token_id = await store_key(gateway_service, alice, "own", "alice-key-1")

    async with mcp_client(gateway_service.url("own"), alice) as session:
        before = await session.call_tool("echo", {"text": "with key"})
        await delete_key(gateway_service, alice, token_id)
        with pytest.raises(MCPError) as refused:
            await session.call_tool("echo", {"text": "without key"})

    assert text_of(before.content[0]) == "with key"
    assert refused.value.error.code == -32010
    assert refused.value.error.message.startswith(
        "No credential stored for server 'own': store your API key"
    )


async def test_replaced_credential_is_used_at_once(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """Audit G5: a replaced credential: the old one stayed cached for up to 30 s."""
    upstream = upstream_factory(auth="bearer", api_key="alice-key-1")
    await gateway_service.add_server("rotated", upstream.url, scope="shared_user", api_key=USER_KEY)
    alice = gateway_service.caller()
    await store_key(gateway_service, alice, "rotated", "alice-key-1")

    async with mcp_client(gateway_service.url("rotated"), alice) as session:
        await session.call_tool("echo", {"text": "old key"})
        upstream.spec.api_key = "alice-key-2"  # the provider rotated the key
        await store_key(gateway_service, alice, "rotated", "alice-key-2")
        after = await session.call_tool("echo", {"text": "new key"})

    assert text_of(after.content[0]) == "new key"
    assert upstream.requests_seen[-1]["authorization"] == "Bearer alice-key-2"


async def test_owner_ends_session_after_deleting_the_credential(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """Audit G5: DELETE answered 403 once the caller's credential was deleted."""
    upstream = upstream_factory(auth="bearer", api_key="alice-key-1")
    await gateway_service.add_server("lapsed", upstream.url, scope="shared_user", api_key=USER_KEY)
    alice = gateway_service.caller()
    token_id = await store_key(gateway_service, alice, "lapsed", "alice-key-1")
    session = await open_session(gateway_service, "lapsed", alice)
    skipped = sessions_counted("lapsed", "upstream_end_skipped")
    await delete_key(gateway_service, alice, token_id)

    ended = await send(gateway_service, "lapsed", "DELETE", headers=session)
    await wait_until(lambda: sessions_counted("lapsed", "upstream_end_skipped") == skipped + 1)

    assert ended.status_code == 200
    assert upstream_deletes(upstream) == []


async def test_refreshed_oauth_token_is_used_at_once(
    gateway_service: GatewayService, upstream_factory: UpstreamFactory
) -> None:
    """Audit G5: an access token replaced through PUT /tokens/{id}/refresh stayed cached."""
    upstream = upstream_factory(auth="bearer", api_key="access-1")
    await gateway_service.add_server("signed", upstream.url, requires_oauth=True)
    alice = gateway_service.caller()
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    async with httpx.AsyncClient(base_url=gateway_service.base_url, headers=alice.headers) as http:
        stored = await http.post(
            "/api/v1/tokens",
            json={
                "type": "oauth_access",
                "identifier": "signed",
                "token": "access-1",
                "expires_at": expires,
            },
        )
        assert stored.status_code == 201, stored.text

        async with mcp_client(gateway_service.url("signed"), alice) as session:
            await session.call_tool("echo", {"text": "first token"})
            upstream.spec.api_key = "access-2"  # the provider issued a new access token
            refreshed = await http.put(
                f"/api/v1/tokens/{stored.json()['id']}/refresh",
                json={"new_access_token": "access-2", "new_expires_at": expires},
            )
            after = await session.call_tool("echo", {"text": "second token"})

    assert refreshed.status_code == 200, refreshed.text
    assert text_of(after.content[0]) == "second token"
    assert upstream.requests_seen[-1]["authorization"] == "Bearer access-2"
