"""Catalog sync against real upstream MCP servers: add, change, remove; backoff and recovery."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from packages.database.encryption import encrypt_value
from packages.models import MCPServer
from packages.models.tools import SyncSchedule, ToolVersion
from registry.config import Settings
from registry.services.sync_worker import SyncWorker
from tests.factories import make_caller
from tests.integration.catalog.helpers import insert_server, raw_server, stored_tool
from tests.support import DEFAULT_TOOLS
from tests.support.fixtures import UpstreamFactory

pytestmark = pytest.mark.e2e

KEY = "sk-catalog-0123456789abcdef"


async def test_sync_reflects_upstream_add_change_remove(
    app: FastAPI, client: AsyncClient, settings: Settings, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="alpha", auth="bearer", api_key=KEY)
    server = await insert_server(name="alpha", url=upstream.url)
    await MCPServer.get_pymongo_collection().update_one(
        {"_id": server.id},
        {
            "$set": {
                "config.apiKey": {
                    "source": "admin",
                    "authorization_type": "bearer",
                    "key": encrypt_value(KEY),
                }
            }
        },
    )
    admin = make_caller(settings, role="admin")
    url = f"/api/v1/sync/servers/{server.id}"

    first = await client.post(url, headers=admin.headers)

    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "success"
    assert first.json()["counts"]["added"] == len(DEFAULT_TOOLS)
    assert upstream.requests_seen[0]["authorization"] == f"Bearer {KEY}"
    echo = await stored_tool(server, "echo")
    assert echo.annotations == {"title": "Echo", "readOnlyHint": True}
    assert echo.metadata.read_only is True
    assert echo.metadata_source["read_only"] == "upstream"
    wipe = await stored_tool(server, "delete_everything")
    assert wipe.metadata.destructive is True

    upstream.add_tool("get_weather", "Weather now.")
    upstream.remove_tool("add")
    upstream.remove_tool("echo")
    upstream.add_tool("echo", "Echo, reworded.", {"type": "object", "properties": {}})
    second = await client.post(url, headers=admin.headers)

    counts = second.json()["counts"]
    assert (counts["added"], counts["updated"], counts["stale"]) == (1, 1, 1)
    assert (await stored_tool(server, "add")).registration_state == "stale"
    weather = await stored_tool(server, "get_weather")
    assert (weather.metadata.read_only, weather.metadata_source["read_only"]) == (
        True,
        "heuristic",
    )
    changed = await stored_tool(server, "echo")
    assert (changed.description, changed.version) == ("Echo, reworded.", 2)
    assert await ToolVersion.find({"toolId": changed.id}).count() == 2
    document = await raw_server(server)
    exposed = set(document["config"]["tools"].split(","))
    assert exposed == (set(DEFAULT_TOOLS) - {"add"}) | {"get_weather"}
    assert document["numTools"] == len(exposed)
    assert "add_mcp_alpha" not in document["config"]["toolFunctions"]


async def test_worker_backs_off_on_down_upstream_and_recovers(
    app: FastAPI, settings: Settings, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(name="flaky")
    server = await insert_server(name="flaky", url=upstream.url)
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    worker = SyncWorker(
        settings=settings, clock=lambda: now[0], rng=random.Random(1), backoff_base_seconds=4
    )
    try:
        await worker.tick()
        upstream.stop()
        due: list[datetime] = []
        schedule: SyncSchedule | None = None
        for _ in range(settings.sync_failure_threshold):
            await SyncSchedule.get_pymongo_collection().update_one(
                {"serverId": server.id}, {"$set": {"nextDueAt": now[0]}}
            )
            assert await worker.tick() == 1
            await worker.drain()
            schedule = await SyncSchedule.find_one({"serverId": server.id})
            assert schedule is not None
            due.append(schedule.next_due_at)
            now[0] = schedule.next_due_at

        assert schedule is not None
        assert schedule.consecutive_failures == settings.sync_failure_threshold
        assert schedule.last_error is not None
        assert schedule.last_error.startswith("Could not connect to upstream")
        gaps = [b - a for a, b in itertools.pairwise(due)]
        assert all(gap > timedelta(0) for gap in gaps)
        errored = await raw_server(server)
        assert errored["status"] == "error"

        upstream.restart()
        await SyncSchedule.get_pymongo_collection().update_one(
            {"serverId": server.id}, {"$set": {"nextDueAt": now[0]}}
        )
        assert await worker.tick() == 1
        await worker.drain()

        recovered = await raw_server(server)
        assert recovered["status"] == "active"
        assert recovered["numTools"] == len(DEFAULT_TOOLS)
        schedule = await SyncSchedule.find_one({"serverId": server.id})
        assert schedule is not None
        assert (schedule.consecutive_failures, schedule.last_outcome) == (0, "success")
    finally:
        await worker.stop()


async def test_sync_per_user_key_server_uses_the_callers_stored_key(
    app: FastAPI, client: AsyncClient, settings: Settings, upstream_factory: UpstreamFactory
) -> None:
    """A shared_user server has no key of its own: a manual sync uses the caller's stored key
    (looked up through the tokens service), and fails clearly when there is none."""
    upstream = upstream_factory(name="peruser", auth="custom", api_key=KEY, custom_header="X-Key")
    server = await insert_server(name="peruser", url=upstream.url, scope="shared_user")
    await MCPServer.get_pymongo_collection().update_one(
        {"_id": server.id},
        {
            "$set": {
                "config.apiKey": {
                    "source": "user",
                    "authorization_type": "custom",
                    "custom_header": "X-Key",
                }
            }
        },
    )
    admin = make_caller(settings, role="admin")
    url = f"/api/v1/sync/servers/{server.id}"

    without_key = await client.post(url, headers=admin.headers)
    assert without_key.status_code == 200, without_key.text
    assert without_key.json()["outcome"] == "error"
    assert without_key.json()["error"] == "No API key is available for this server"
    assert upstream.requests_seen == []

    stored = await client.post(
        "/api/v1/tokens",
        headers=admin.headers,
        json={"type": "api_key", "identifier": "peruser", "token": KEY},
    )
    assert stored.status_code == 201, stored.text
    with_key = await client.post(url, headers=admin.headers)

    assert with_key.json()["outcome"] == "success"
    assert with_key.json()["counts"]["added"] == len(DEFAULT_TOOLS)
    assert upstream.requests_seen[0]["x-key"] == KEY
