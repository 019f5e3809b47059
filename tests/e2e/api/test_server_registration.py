"""Registration, refresh and tools against real upstream MCP servers started by the tests."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from bson import ObjectId
from httpx import ASGITransport, AsyncClient

from packages.database.connection import MongoClient
from packages.database.encryption import decrypt_value
from registry.app import create_app
from registry.config import Settings
from tests.conftest import make_settings
from tests.factories import Caller, make_caller
from tests.integration.api.server_data import SERVERS, UNREACHABLE_URL, server_body, stored
from tests.support import DEFAULT_TOOLS
from tests.support.fixtures import UpstreamFactory

pytestmark = pytest.mark.e2e

KEY = "sk-upstream-0123456789abcdef"
WRONG_KEY = "sk-wrong-fedcba9876543210"


@pytest.fixture
def admin(settings: Settings) -> Caller:
    return make_caller(settings, role="admin")


async def register(client: AsyncClient, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(SERVERS, json=body, headers=caller.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_register_server_reachable_stores_discovery(
    client: AsyncClient,
    admin: Caller,
    upstream_factory: UpstreamFactory,
    mongo_client: MongoClient,
    settings: Settings,
    transport: Literal["streamable-http", "sse"],
) -> None:
    upstream = upstream_factory(transport=transport, name="alpha")

    body = await register(client, admin, server_body("alpha", type=transport, url=upstream.url))

    assert body["status"] == "active"
    assert body["errorMessage"] is None and body["lastError"] is None
    assert body["lastConnected"] is not None
    assert body["numTools"] == len(DEFAULT_TOOLS)
    assert body["tools"] == ",".join(DEFAULT_TOOLS)
    assert body["initDuration"] > 0
    assert "tools" in json.loads(body["capabilities"])
    assert set(body["toolFunctions"]) == {f"{tool}_mcp_alpha" for tool in DEFAULT_TOOLS}
    echo = body["toolFunctions"]["echo_mcp_alpha"]
    assert echo == {
        "type": "function",
        "function": {
            "name": "echo_mcp_alpha",
            "description": "Return the text unchanged.",
            "parameters": echo["function"]["parameters"],
        },
    }
    assert echo["function"]["parameters"]["required"] == ["text"]
    document = await stored(mongo_client, settings, body["id"])
    assert document["numTools"] == len(DEFAULT_TOOLS)
    assert document["config"]["toolFunctions"]["add_mcp_alpha"]["function"]["name"] == (
        "add_mcp_alpha"
    )
    assert document["config"]["initDuration"] == body["initDuration"]
    assert "lastError" not in document and "errorMessage" not in document


async def test_get_server_tools_returns_mcp_native_tools(
    client: AsyncClient,
    admin: Caller,
    upstream_factory: UpstreamFactory,
    mongo_client: MongoClient,
    settings: Settings,
) -> None:
    upstream = upstream_factory(name="native")
    created = await register(client, admin, server_body("native", url=upstream.url))
    # The gateway writes lastConnected when it connects; that is not a discovery, and
    # retrievedAt followed it (it was read from lastConnected).
    later = datetime.now(UTC) + timedelta(hours=1)
    await mongo_client[settings.mongo_db]["mcpservers"].update_one(
        {"_id": ObjectId(created["id"])}, {"$set": {"lastConnected": later}}
    )

    response = await client.get(f"{SERVERS}/{created['id']}/tools", headers=admin.headers)

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == created["id"]
    assert body["serverName"] == "native"
    assert body["cached"] is True
    runs = await client.get(
        "/api/v1/sync/runs", params={"server_id": created["id"]}, headers=admin.headers
    )
    (registration,) = runs.json()["sync_runs"]
    assert registration["trigger"] == "register"
    assert datetime.fromisoformat(body["retrievedAt"]) == datetime.fromisoformat(
        registration["finishedAt"]
    )
    assert body["numTools"] == len(DEFAULT_TOOLS)
    assert "tools" in body["capabilities"]
    tools = {tool["name"]: tool for tool in body["tools"]}
    assert set(tools) == set(DEFAULT_TOOLS)
    assert tools["add"]["description"] == "Add two integers."
    assert tools["add"]["inputSchema"]["required"] == ["a", "b"]


@pytest.mark.parametrize("style", ["bearer", "basic", "custom"])
async def test_register_server_sends_api_key_in_header_style(
    client: AsyncClient,
    admin: Caller,
    upstream_factory: UpstreamFactory,
    mongo_client: MongoClient,
    settings: Settings,
    style: Literal["bearer", "basic", "custom"],
) -> None:
    upstream = upstream_factory(auth=style, api_key=KEY, custom_header="X-Upstream-Key")
    api_key: dict[str, Any] = {"key": KEY, "source": "admin", "authorization_type": style}
    if style == "custom":
        api_key["custom_header"] = "X-Upstream-Key"

    body = await register(client, admin, server_body("keyed", url=upstream.url, apiKey=api_key))

    assert body["status"] == "active", body["errorMessage"]
    assert body["apiKey"]["key"] == "***"
    expected = {
        "bearer": ("authorization", f"Bearer {KEY}"),
        "basic": ("authorization", f"Basic {KEY}"),
        "custom": ("x-upstream-key", KEY),
    }[style]
    assert upstream.requests_seen
    assert all(seen.get(expected[0]) == expected[1] for seen in upstream.requests_seen)
    stored_key = (await stored(mongo_client, settings, body["id"]))["config"]["apiKey"]["key"]
    assert stored_key != KEY
    assert decrypt_value(stored_key) == KEY


async def test_register_server_wrong_key_is_error_without_secret(
    client: AsyncClient, admin: Caller, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(auth="bearer", api_key=KEY)
    api_key = {"key": WRONG_KEY, "source": "admin", "authorization_type": "bearer"}

    response = await client.post(
        SERVERS, json=server_body("wrong", url=upstream.url, apiKey=api_key), headers=admin.headers
    )

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "error"
    assert body["errorMessage"] == "Upstream rejected the credentials (HTTP 401)"
    assert WRONG_KEY not in response.text and KEY not in response.text
    assert body["toolFunctions"] == {}


async def test_register_per_user_key_server_discovers_with_the_registrants_key(
    client: AsyncClient, admin: Caller, upstream_factory: UpstreamFactory
) -> None:
    """``apiKey.source: user`` without a server key: discovery uses the registering admin's
    own stored key; without one, registration says so and never calls the upstream."""
    upstream = upstream_factory(auth="custom", api_key=KEY, custom_header="X-Key")
    api_key = {"source": "user", "authorization_type": "custom", "custom_header": "X-Key"}
    body = server_body("peruser", url=upstream.url, scope="shared_user", apiKey=api_key)

    missing = await register(client, admin, body)
    calls_without_key = len(upstream.requests_seen)
    deleted = await client.delete(f"{SERVERS}/{missing['id']}", headers=admin.headers)
    stored_key = await client.post(
        "/api/v1/tokens",
        headers=admin.headers,
        json={"type": "api_key", "identifier": "peruser", "token": KEY},
    )
    found = await register(client, admin, body)

    assert (missing["status"], missing["errorMessage"]) == (
        "error",
        "No API key is available for this server",
    )
    assert calls_without_key == 0
    assert deleted.status_code == 204 and stored_key.status_code == 201
    assert found["status"] == "active", found["errorMessage"]
    assert found["numTools"] == len(DEFAULT_TOOLS)
    assert all(seen.get("x-key") == KEY for seen in upstream.requests_seen)


async def test_register_server_unreachable_fails_fast(client: AsyncClient, admin: Caller) -> None:
    started = time.monotonic()

    body = await register(client, admin, server_body("down", url=UNREACHABLE_URL))

    assert time.monotonic() - started < 3
    assert body["status"] == "error"
    assert body["errorMessage"] == f"Could not connect to upstream at {UNREACHABLE_URL}"
    assert body["lastError"] is not None
    assert body["lastConnected"] is None


@pytest.fixture
async def impatient_client(
    mongo_uri: str, db_name: str, tmp_path: Path
) -> AsyncIterator[AsyncClient]:
    """An app whose discovery gives up after half a second."""
    settings = make_settings(
        mongo_uri=mongo_uri, db_name=db_name, data_dir=tmp_path, discovery_timeout_seconds=0.5
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://registry.test") as http:
            yield http


async def test_register_server_slow_upstream_times_out_then_refresh_recovers(
    impatient_client: AsyncClient, settings: Settings, upstream_factory: UpstreamFactory
) -> None:
    admin = make_caller(settings, role="admin")
    upstream = upstream_factory(name="slow", delay_seconds=3.0)
    started = time.monotonic()

    body = await register(impatient_client, admin, server_body("slow", url=upstream.url))

    assert time.monotonic() - started < 2.5
    assert body["status"] == "error"
    assert body["errorMessage"] == "Upstream did not answer within 0.5 s"

    upstream.spec.delay_seconds = 0.0
    refreshed = await impatient_client.post(
        f"{SERVERS}/{body['id']}/refresh", headers=admin.headers
    )
    assert refreshed.status_code == 200
    assert refreshed.json()["status"] == "active"
    assert refreshed.json()["message"] == "Server health check successful"
    assert refreshed.json()["errorMessage"] is None
    assert refreshed.json()["lastError"] is None
    assert refreshed.json()["numTools"] == len(DEFAULT_TOOLS)


async def test_refresh_server_after_upstream_returns_becomes_active(
    client: AsyncClient, admin: Caller, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="flaky")
    upstream.stop()
    created = await register(client, admin, server_body("flaky", url=upstream.url))
    assert created["status"] == "error"

    failed = await client.post(f"{SERVERS}/{created['id']}/refresh", headers=admin.headers)
    assert failed.status_code == 200
    assert failed.json()["status"] == "error"
    assert failed.json()["message"] == "Server health check failed"

    upstream.start()
    refreshed = await client.post(f"{SERVERS}/{created['id']}/refresh", headers=admin.headers)

    assert refreshed.status_code == 200
    body = refreshed.json()
    assert body["status"] == "active"
    assert body["lastConnected"] is not None
    assert body["lastError"] is None and body["errorMessage"] is None
    assert body["tools"] == ",".join(DEFAULT_TOOLS)
    assert body["updatedAt"] > created["updatedAt"]


async def test_refresh_server_keeps_inactive_status(
    client: AsyncClient, admin: Caller, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="parked")
    created = await register(client, admin, server_body("parked", url=upstream.url))
    await client.post(
        f"{SERVERS}/{created['id']}/toggle", json={"enabled": False}, headers=admin.headers
    )

    refreshed = await client.post(f"{SERVERS}/{created['id']}/refresh", headers=admin.headers)

    assert refreshed.json()["status"] == "inactive"
    assert refreshed.json()["message"] == "Server health check successful"


async def test_get_server_tools_refresh_picks_up_new_tool(
    client: AsyncClient, admin: Caller, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="growing")
    created = await register(client, admin, server_body("growing", url=upstream.url))
    upstream.add_tool(
        "lookup",
        "Look something up.",
        {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    )

    cached = await client.get(f"{SERVERS}/{created['id']}/tools", headers=admin.headers)
    fresh = await client.get(
        f"{SERVERS}/{created['id']}/tools", params={"refresh": "true"}, headers=admin.headers
    )

    assert "lookup" not in {tool["name"] for tool in cached.json()["tools"]}
    assert fresh.status_code == 200
    body = fresh.json()
    assert body["cached"] is False
    assert body["numTools"] == len(DEFAULT_TOOLS) + 1
    lookup = next(tool for tool in body["tools"] if tool["name"] == "lookup")
    assert lookup == {
        "name": "lookup",
        "description": "Look something up.",
        "inputSchema": {
            "type": "object",
            "properties": {"q": {"type": "string"}},
            "required": ["q"],
        },
    }
    detail = (await client.get(f"{SERVERS}/{created['id']}", headers=admin.headers)).json()
    assert "lookup_mcp_growing" in detail["toolFunctions"]
