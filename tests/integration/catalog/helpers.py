"""Builders for catalog tests: raw server documents and discovered tools."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from packages.models import MCPServer
from packages.models.tools import Tool
from registry.gateway.upstream import DiscoveredTool

CLOSED_URL = "http://127.0.0.1:9/mcp"


def server_document(
    *,
    name: str,
    scope: str = "shared_app",
    author: ObjectId | str | None = None,
    status: str = "active",
    url: str = CLOSED_URL,
    transport: str = "streamable-http",
) -> dict[str, Any]:
    """An ``mcpservers`` document as the external app or registration stores it."""
    now = datetime.now(UTC)
    return {
        "serverName": name,
        "config": {"type": transport, "url": url, "requiresOAuth": False},
        "author": ObjectId(str(author)) if author is not None else ObjectId(),
        "scope": scope,
        "status": status,
        "path": f"/mcp/{name}",
        "tags": [],
        "numStars": 0,
        "createdAt": now,
        "updatedAt": now,
        "__v": 0,
    }


async def insert_server(
    *,
    name: str,
    scope: str = "shared_app",
    author: ObjectId | str | None = None,
    status: str = "active",
    url: str = CLOSED_URL,
    transport: str = "streamable-http",
) -> MCPServer:
    document = server_document(
        name=name, scope=scope, author=author, status=status, url=url, transport=transport
    )
    result = await MCPServer.get_pymongo_collection().insert_one(document)
    server = await MCPServer.get(result.inserted_id)
    assert server is not None
    return server


def tool(
    name: str,
    *,
    description: str | None = None,
    properties: dict[str, Any] | None = None,
    required: list[str] | None = None,
    annotations: dict[str, Any] | None = None,
) -> DiscoveredTool:
    schema: dict[str, Any] = {"type": "object", "properties": properties or {}}
    if required:
        schema["required"] = required
    return DiscoveredTool(
        name=name,
        description=description if description is not None else f"The {name} tool.",
        input_schema=schema,
        output_schema=None,
        annotations=annotations,
        title=None,
    )


async def stored_tool(server: MCPServer, name: str) -> Tool:
    found = await Tool.find_one({"serverId": server.id, "name": name})
    assert found is not None, name
    return found


async def raw_server(server: MCPServer) -> dict[str, Any]:
    document = await MCPServer.get_pymongo_collection().find_one({"_id": server.id})
    assert document is not None
    return dict(document)
