"""The combined server's ``tools/list`` costs a bounded number of queries, whatever the number of
servers; name collisions are offered for neither tool.

The gateway runs in-process on a database handle whose client counts the commands it sends
(``pymongo.monitoring.CommandListener``), so the tests see every query the list costs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from pymongo.monitoring import CommandListener, CommandStartedEvent
from structlog.testing import capture_logs

from packages.database.connection import MongoClient
from registry.config import Settings
from registry.gateway.asgi import GatewayApp
from registry.gateway.catalog import MAX_IN_IDS
from registry.runtime import Runtime
from registry.services import catalog_cache
from tests.factories import Caller, make_caller
from tests.integration.catalog.helpers import server_document

SERVERS = 50
TOOLS_PER_SERVER = 3
_ACCEPT = {"accept": "application/json, text/event-stream"}


@dataclass
class Commands(CommandListener):
    """The ``find`` commands sent, by collection, with their filters."""

    finds: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.finds.append((event.command["find"], dict(event.command.get("filter", {}))))

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass

    def collections(self) -> list[str]:
        return sorted(collection for collection, _ in self.finds)


@dataclass
class Combined:
    http: httpx.AsyncClient
    commands: Commands

    async def session(self, caller: Caller) -> dict[str, str]:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        }
        response = await self.http.post("/", json=init, headers={**caller.headers, **_ACCEPT})
        assert response.status_code == 200, response.text
        return {**caller.headers, **_ACCEPT, "mcp-session-id": response.headers["mcp-session-id"]}

    async def rpc(self, headers: dict[str, str], method: str, **params: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params:
            message["params"] = params
        response = await self.http.post("/", json=message, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def names(self, headers: dict[str, str]) -> set[str]:
        listed = await self.rpc(headers, "tools/list")
        return {tool["name"] for tool in listed["result"]["tools"]}


@pytest.fixture
async def combined(app: FastAPI, mongo_uri: str, db_name: str) -> AsyncIterator[Combined]:
    """A gateway of its own (same settings and database) whose queries are counted."""
    commands = Commands()
    client: MongoClient = AsyncMongoClient(mongo_uri, tz_aware=True, event_listeners=[commands])
    runtime: Runtime = app.state.runtime
    counted = dataclasses.replace(runtime, client=client, database=client[db_name], extras={})

    async def no_credential(**_: Any) -> None:
        return None

    gateway_app = GatewayApp(credential_finder=no_credential)
    await gateway_app.start(counted)
    try:
        transport = httpx.ASGITransport(app=gateway_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as http:
            yield Combined(http=http, commands=commands)
    finally:
        await gateway_app.stop(counted)
        await client.close()


def tool_document(server_id: ObjectId, server_name: str, name: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "serverId": server_id,
        "serverName": server_name,
        "name": name,
        "description": f"{name} of {server_name}",
        "inputSchema": {"type": "object"},
        "exposureState": "active",
        "registrationState": "selected",
        "allowedRoles": [],
        "allowedGroups": [],
        "metadata": {},
        "discoveryHash": f"{server_name}/{name}",
        "version": 1,
        "createdAt": now,
        "updatedAt": now,
    }


async def insert(
    mongo_client: MongoClient, db_name: str, name: str, tools: list[str], **fields: Any
) -> ObjectId:
    database = mongo_client[db_name]
    result = await database["mcpservers"].insert_one(server_document(name=name, **fields))
    server_id: ObjectId = result.inserted_id
    if tools:
        await database["tools"].insert_many(
            [tool_document(server_id, name, tool) for tool in tools]
        )
    return server_id


@pytest.mark.parametrize("servers", [50, 100], ids=["in-ids", "scan"])
async def test_combined_list_reads_servers_and_tools_once_whatever_their_number(
    combined: Combined, mongo_client: MongoClient, db_name: str, settings: Settings, servers: int
) -> None:
    """With 1,000 servers a cold combined ``tools/list`` took 2-45 s: it resolved every
    visible server and read its tools one by one (about two queries per server). Past
    ``MAX_IN_IDS`` servers the tools query reads every exposed tool: the private server's
    tools must still stay out."""
    tools = [f"tool{i}" for i in range(TOOLS_PER_SERVER)]
    for i in range(servers):
        await insert(mongo_client, db_name, f"s{i:03d}", tools)
    await insert(mongo_client, db_name, "off", tools, status="inactive")
    other = make_caller(settings)
    await insert(mongo_client, db_name, "theirs", tools, scope="private_user", author=other.id)
    user = make_caller(settings)
    headers = await combined.session(user)
    combined.commands.finds.clear()

    names = await combined.names(headers)
    cold = combined.commands.collections()
    tools_query = combined.commands.finds[-1][1]
    combined.commands.finds.clear()
    again = await combined.names(headers)
    warm = combined.commands.collections()

    assert names == {f"{tool}_mcp_s{i:03d}" for i in range(servers) for tool in tools}
    assert cold == ["mcpservers", "tools"]
    assert ("serverId" in tools_query) == (servers <= MAX_IN_IDS)
    assert again == names
    assert warm == []


async def test_catalog_change_of_one_server_rereads_only_that_server(
    combined: Combined, mongo_client: MongoClient, db_name: str, settings: Settings
) -> None:
    """A change to any server's tools used to drop every server's cached tools."""
    ids = [await insert(mongo_client, db_name, f"s{i:02d}", ["a", "b"]) for i in range(SERVERS)]
    headers = await combined.session(make_caller(settings))
    await combined.names(headers)
    await mongo_client[db_name]["tools"].insert_one(tool_document(ids[7], "s07", "c"))
    combined.commands.finds.clear()

    catalog_cache.invalidate(ids[7])
    names = await combined.names(headers)

    assert "c_mcp_s07" in names
    assert len(combined.commands.finds) == 1
    collection, query = combined.commands.finds[0]
    assert collection == "tools"
    assert query["serverId"] == {"$in": [ids[7]]}


async def test_server_change_rereads_visible_servers_at_once(
    combined: Combined, mongo_client: MongoClient, db_name: str, settings: Settings
) -> None:
    server_id = await insert(mongo_client, db_name, "alpha", ["a"])
    await insert(mongo_client, db_name, "beta", ["a"])
    headers = await combined.session(make_caller(settings))
    before = await combined.names(headers)
    await mongo_client[db_name]["mcpservers"].update_one(
        {"_id": server_id}, {"$set": {"status": "inactive"}}
    )

    catalog_cache.server_changed(server_id)
    after = await combined.names(headers)

    assert before == {"a_mcp_alpha", "a_mcp_beta"}
    assert after == {"a_mcp_beta"}


async def test_colliding_combined_names_offered_for_neither_and_logged_once(
    combined: Combined, mongo_client: MongoClient, db_name: str, settings: Settings
) -> None:
    """``echo_mcp`` on ``delta`` and ``echo`` on ``mcp_delta`` both became
    ``echo_mcp_mcp_delta``: /mcp listed it once and routed it to one of them silently."""
    delta = await insert(mongo_client, db_name, "delta", ["echo_mcp", "add"])
    mcp_delta = await insert(mongo_client, db_name, "mcp_delta", ["echo", "add"])
    headers = await combined.session(make_caller(settings))

    with capture_logs() as logs:
        names = await combined.names(headers)
        called = await combined.rpc(
            headers, "tools/call", name="echo_mcp_mcp_delta", arguments={"text": "hi"}
        )
        await combined.names(headers)

    assert names == {"add_mcp_delta", "add_mcp_mcp_delta"}
    assert called["error"] == {
        "code": -32012,
        "message": "Tool 'echo_mcp_mcp_delta' is not available to you",
    }
    warnings = [entry for entry in logs if entry["event"] == "combined_tool_name_collision"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["name"] == "echo_mcp_mcp_delta"
    assert sorted(warnings[0]["tools"]) == ["delta/echo_mcp", "mcp_delta/echo"]
    assert sorted(warnings[0]["server_ids"]) == sorted([str(delta), str(mcp_delta)])


async def test_collision_with_a_tool_the_caller_cannot_use_is_no_collision(
    combined: Combined, mongo_client: MongoClient, db_name: str, settings: Settings
) -> None:
    """Only tools the caller may use collide: another user's private server must neither hide
    a caller's tool nor reveal itself by doing so."""
    owner = make_caller(settings)
    await insert(
        mongo_client, db_name, "delta", ["echo_mcp"], scope="private_user", author=owner.id
    )
    await insert(mongo_client, db_name, "mcp_delta", ["echo"])

    owner_names = await combined.names(await combined.session(owner))
    other_names = await combined.names(await combined.session(make_caller(settings)))

    assert owner_names == set()
    assert other_names == {"echo_mcp_mcp_delta"}
