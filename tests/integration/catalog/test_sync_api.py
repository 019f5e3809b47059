"""``/api/v1/sync``: trigger a sync and read the sync history."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient

from packages.models.tools import SyncRun
from registry.config import Settings
from registry.services.catalog_sync import sync_server_tools
from tests.factories import make_caller
from tests.integration.catalog.helpers import insert_server, stored_tool, tool


async def test_sync_server_unreachable_records_error_run(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    admin = make_caller(settings, role="admin")
    server = await insert_server(name="alpha")
    await sync_server_tools(server=server, discovered=[tool("a")], trigger="register")

    response = await client.post(f"/api/v1/sync/servers/{server.id}", headers=admin.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["outcome"] == "error"
    assert body["trigger"] == "manual"
    assert body["actorId"] == admin.id
    assert body["serverName"] == "alpha"
    assert body["error"] == "Could not connect to upstream at http://127.0.0.1:9/mcp"
    assert (await stored_tool(server, "a")).sync_error == body["error"]
    assert await SyncRun.find({"serverId": server.id, "outcome": "error"}).count() == 1


async def test_sync_server_shared_by_user_forbidden(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    user = make_caller(settings, role="user")
    server = await insert_server(name="alpha")

    response = await client.post(f"/api/v1/sync/servers/{server.id}", headers=user.headers)

    assert response.status_code == 403
    assert await SyncRun.find_all().count() == 0


async def test_sync_server_others_private_not_found(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    user = make_caller(settings, role="user")
    server = await insert_server(name="alpha", scope="private_user")

    response = await client.post(f"/api/v1/sync/servers/{server.id}", headers=user.headers)
    malformed = await client.post("/api/v1/sync/servers/nope", headers=user.headers)

    assert response.status_code == 404
    assert response.json()["message"] == "Server not found"
    assert malformed.status_code == 404


async def test_list_sync_runs_user_sees_visible_servers_only(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    admin = make_caller(settings, role="admin")
    user = make_caller(settings, role="user")
    shared = await insert_server(name="shared")
    private = await insert_server(name="private", scope="private_user")
    await sync_server_tools(server=shared, discovered=[tool("a")], trigger="register")
    await sync_server_tools(server=private, discovered=[tool("b")], trigger="register")
    await sync_server_tools(server=shared, discovered=[tool("a")], trigger="scheduled")

    as_admin = await client.get("/api/v1/sync/runs", headers=admin.headers)
    as_user = await client.get("/api/v1/sync/runs", headers=user.headers)
    filtered = await client.get(
        "/api/v1/sync/runs",
        headers=admin.headers,
        params={"server_id": str(shared.id), "outcome": "success", "per_page": 1},
    )

    assert as_admin.json()["pagination"]["total"] == 3
    runs = as_user.json()["sync_runs"]
    assert [(r["serverName"], r["trigger"]) for r in runs] == [
        ("shared", "scheduled"),
        ("shared", "register"),
    ]
    assert runs[1]["counts"] == {
        "added": 1,
        "updated": 0,
        "unchanged": 0,
        "stale": 0,
        "reactivated": 0,
    }
    assert filtered.json()["pagination"] == {
        "total": 2,
        "page": 1,
        "per_page": 1,
        "total_pages": 2,
    }
    assert filtered.json()["sync_runs"][0]["trigger"] == "scheduled"
