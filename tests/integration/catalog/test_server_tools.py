"""The catalog's per-server views: usable tools in MCP shape, and forgetting a server."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from packages.models.tools import SyncSchedule, Tool, ToolVersion
from registry.config import Settings
from registry.errors import NotFoundError
from registry.services.catalog_sync import forget_server, sync_server_tools
from registry.services.catalog_tools import usable_server_tools
from tests.factories import make_caller
from tests.integration.catalog.helpers import insert_server, tool


async def test_usable_server_tools_respects_states_and_groups(
    app: FastAPI, settings: Settings
) -> None:
    server = await insert_server(name="erp")
    await sync_server_tools(
        server=server,
        discovered=[
            tool("get_invoice", properties={"id": {"type": "string"}}, required=["id"]),
            tool("modify_ledger", annotations={"destructiveHint": True}),
            tool("hidden"),
        ],
        trigger="register",
    )
    await Tool.find_one({"name": "modify_ledger"}).update({"$set": {"allowedGroups": ["fin"]}})
    await Tool.find_one({"name": "hidden"}).update({"$set": {"exposureState": "disabled"}})
    finance = make_caller(settings, groups=("fin",))
    other = make_caller(settings)

    for_finance = await usable_server_tools(user=finance.user, server_id=str(server.id))
    for_other = await usable_server_tools(user=other.user, server_id=str(server.id))

    assert [t["name"] for t in for_finance] == ["get_invoice", "modify_ledger"]
    assert for_finance[0] == {
        "name": "get_invoice",
        "description": "The get_invoice tool.",
        "inputSchema": {
            "type": "object",
            "properties": {"id": {"type": "string"}},
            "required": ["id"],
        },
    }
    assert for_finance[1]["annotations"] == {"destructiveHint": True}
    assert [t["name"] for t in for_other] == ["get_invoice"]


async def test_usable_server_tools_hidden_server_not_found(
    app: FastAPI, settings: Settings
) -> None:
    server = await insert_server(name="private", scope="private_user")

    with pytest.raises(NotFoundError):
        await usable_server_tools(user=make_caller(settings).user, server_id=str(server.id))


async def test_usable_server_tools_inactive_server_empty(app: FastAPI, settings: Settings) -> None:
    server = await insert_server(name="off", status="inactive")
    await sync_server_tools(server=server, discovered=[tool("a")], trigger="register")

    tools = await usable_server_tools(
        user=make_caller(settings, role="admin").user, server_id=str(server.id)
    )

    assert tools == []


async def test_forget_server_removes_tools_and_schedule_keeps_history(app: FastAPI) -> None:
    server = await insert_server(name="gone")
    await sync_server_tools(server=server, discovered=[tool("a"), tool("b")], trigger="register")
    await SyncSchedule.get_pymongo_collection().insert_one(
        {"serverId": server.id, "nextDueAt": server.created_at}
    )
    assert server.id is not None

    removed = await forget_server(server_id=server.id)

    assert removed == 2
    assert await Tool.find({"serverId": server.id}).count() == 0
    assert await SyncSchedule.find({"serverId": server.id}).count() == 0
    assert await ToolVersion.find({"serverId": server.id}).count() == 2
