"""Catalog synchronisation against real MongoDB, fed with DiscoveredTool lists directly."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from packages.models.tools import SyncRun, Tool, ToolVersion
from registry.services.catalog_sync import record_failed_sync, sync_server_tools
from tests.integration.catalog.helpers import insert_server, raw_server, stored_tool, tool


async def test_sync_new_server_adds_selected_active_tools(app: FastAPI) -> None:
    server = await insert_server(name="alpha")

    result = await sync_server_tools(
        server=server,
        discovered=[tool("get_user"), tool("add"), tool("delete_user")],
        trigger="register",
        actor_id="sync",
    )

    assert result.counts.model_dump() == {
        "added": 3,
        "updated": 0,
        "unchanged": 0,
        "stale": 0,
        "reactivated": 0,
    }
    assert result.exposed_tools == ["get_user", "add", "delete_user"]
    added = await stored_tool(server, "get_user")
    assert added.exposure_state == "active"
    assert added.registration_state == "selected"
    assert added.version == 1
    assert added.server_name == "alpha"
    assert len(added.discovery_hash) == 64
    assert added.last_discovered_at is not None
    document = await raw_server(server)
    assert document["config"]["tools"] == "get_user,add,delete_user"
    assert document["numTools"] == 3
    assert document["config"]["toolFunctions"]["add_mcp_alpha"] == {
        "type": "function",
        "function": {
            "name": "add_mcp_alpha",
            "description": "The add tool.",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    run = await SyncRun.get(result.run.id)
    assert run is not None
    assert run.outcome == "success"
    assert run.trigger == "register"
    assert run.finished_at is not None
    assert run.counts.added == 3
    assert await ToolVersion.find({"serverId": server.id}).count() == 3


async def test_sync_changed_tool_updates_version_and_history(app: FastAPI) -> None:
    server = await insert_server(name="alpha")
    await sync_server_tools(
        server=server, discovered=[tool("a"), tool("b")], trigger="register", actor_id="sync"
    )
    before = await stored_tool(server, "a")

    result = await sync_server_tools(
        server=server,
        discovered=[tool("a", description="Changed."), tool("b")],
        trigger="scheduled",
        actor_id="sync",
    )

    assert (result.counts.updated, result.counts.unchanged, result.counts.added) == (1, 1, 0)
    after = await stored_tool(server, "a")
    assert after.version == 2
    assert after.description == "Changed."
    assert after.discovery_hash != before.discovery_hash
    assert after.updated_at > before.updated_at
    versions = await ToolVersion.find({"toolId": after.id}).sort("version").to_list()
    assert [(v.version, v.reason, v.changed_by) for v in versions] == [
        (1, "discovered", "sync"),
        (2, "upstream_changed", "sync"),
    ]
    assert versions[0].snapshot["description"] == "The a tool."
    assert versions[1].snapshot["description"] == "Changed."
    unchanged = await stored_tool(server, "b")
    assert unchanged.version == 1
    document = await raw_server(server)
    assert document["config"]["toolFunctions"]["a_mcp_alpha"]["function"]["description"] == (
        "Changed."
    )


async def test_sync_missing_tool_becomes_stale_not_deleted(app: FastAPI) -> None:
    server = await insert_server(name="alpha")
    await sync_server_tools(
        server=server, discovered=[tool("a"), tool("b")], trigger="register", actor_id="sync"
    )

    result = await sync_server_tools(
        server=server, discovered=[tool("a")], trigger="scheduled", actor_id="sync"
    )

    assert (result.counts.stale, result.counts.unchanged) == (1, 1)
    gone = await stored_tool(server, "b")
    assert gone.registration_state == "stale"
    assert gone.exposure_state == "active"
    assert await Tool.find({"serverId": server.id}).count() == 2
    # Going stale is a change like any other: versioned, in the history, with a new updatedAt
    # (so a client holding the earlier one gets 409). It was a silent bulk update before.
    assert gone.version == 2
    assert gone.updated_at > (await stored_tool(server, "a")).updated_at
    history = await ToolVersion.find({"toolId": gone.id}).sort("version").to_list()
    assert [(entry.version, entry.reason) for entry in history] == [
        (1, "discovered"),
        (2, "stale"),
    ]
    assert history[-1].snapshot["registrationState"] == "stale"
    document = await raw_server(server)
    assert document["config"]["tools"] == "a"
    assert document["numTools"] == 1
    assert set(document["config"]["toolFunctions"]) == {"a_mcp_alpha"}


async def test_sync_reappearing_stale_tool_is_selected_again(app: FastAPI) -> None:
    server = await insert_server(name="alpha")
    await sync_server_tools(
        server=server, discovered=[tool("a"), tool("b")], trigger="register", actor_id="sync"
    )
    await sync_server_tools(
        server=server, discovered=[tool("a")], trigger="scheduled", actor_id="sync"
    )

    result = await sync_server_tools(
        server=server, discovered=[tool("a"), tool("b")], trigger="list_changed", actor_id="sync"
    )

    assert (result.counts.reactivated, result.counts.unchanged, result.counts.stale) == (1, 1, 0)
    back = await stored_tool(server, "b")
    assert back.registration_state == "selected"
    assert back.version == 3
    history = await ToolVersion.find({"toolId": back.id}).sort("version").to_list()
    assert [entry.reason for entry in history] == ["discovered", "stale", "reappeared"]
    assert (await raw_server(server))["numTools"] == 2


async def test_sync_draft_default_exposes_nothing_until_reviewed(app: FastAPI) -> None:
    server = await insert_server(name="alpha")

    result = await sync_server_tools(
        server=server,
        discovered=[tool("a")],
        trigger="register",
        actor_id="sync",
        default_exposure="draft",
    )

    assert result.exposed_tools == []
    assert (await stored_tool(server, "a")).exposure_state == "draft"
    document = await raw_server(server)
    assert document["numTools"] == 0
    assert document["config"]["toolFunctions"] == {}
    assert document["config"]["tools"] == ""


async def test_sync_inactive_server_exposes_no_tools(app: FastAPI) -> None:
    server = await insert_server(name="alpha", status="inactive")

    result = await sync_server_tools(
        server=server, discovered=[tool("a")], trigger="manual", actor_id="sync"
    )

    assert result.exposed_tools == []
    assert (await stored_tool(server, "a")).exposure_state == "active"
    assert (await raw_server(server))["numTools"] == 0


async def test_sync_concurrent_runs_create_no_duplicates(app: FastAPI) -> None:
    """Two syncs of one server at once must not insert a tool twice (unique index + upsert)."""
    server = await insert_server(name="alpha")
    tools = [tool(f"t{i}") for i in range(5)]

    results = await asyncio.gather(
        *(
            sync_server_tools(server=server, discovered=tools, trigger="manual", actor_id="sync")
            for _ in range(8)
        )
    )

    assert await Tool.find({"serverId": server.id}).count() == 5
    assert sum(r.counts.added for r in results) == 5
    assert sum(r.counts.added + r.counts.unchanged for r in results) == 40
    assert await ToolVersion.find({"serverId": server.id}).count() == 5
    assert (await raw_server(server))["numTools"] == 5


async def test_sync_unchanged_run_leaves_server_updated_at(app: FastAPI) -> None:
    server = await insert_server(name="alpha")
    await sync_server_tools(server=server, discovered=[tool("a")], trigger="register")
    stamp = (await raw_server(server))["updatedAt"]

    await sync_server_tools(server=server, discovered=[tool("a")], trigger="scheduled")

    assert (await raw_server(server))["updatedAt"] == stamp


async def test_sync_duplicate_names_keep_first_definition(app: FastAPI) -> None:
    server = await insert_server(name="alpha")

    result = await sync_server_tools(
        server=server,
        discovered=[tool("a", description="first"), tool("a", description="second")],
        trigger="register",
    )

    assert result.counts.added == 1
    assert (await stored_tool(server, "a")).description == "first"


async def test_record_failed_sync_marks_tools_and_run(app: FastAPI) -> None:
    server = await insert_server(name="alpha")
    await sync_server_tools(server=server, discovered=[tool("a")], trigger="register")

    run = await record_failed_sync(
        server=server, trigger="scheduled", actor_id="sync", error="Upstream is down"
    )

    assert (run.outcome, run.error) == ("error", "Upstream is down")
    assert (await stored_tool(server, "a")).sync_error == "Upstream is down"
    await sync_server_tools(server=server, discovered=[tool("a")], trigger="scheduled")
    assert (await stored_tool(server, "a")).sync_error is None
