"""Builders for server tests: request bodies and raw ``mcpservers`` documents."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from packages.database.connection import MongoClient
from registry.config import Settings

# Port 9 (discard) is closed on loopback: discovery fails at once with "Could not connect".
UNREACHABLE_URL = "http://127.0.0.1:9/mcp"
ENCRYPT_V2 = re.compile(r"^[0-9a-f]{32}:[0-9a-f]+$")
SERVERS = "/api/v1/servers"


def server_body(name: str, **overrides: Any) -> dict[str, Any]:
    """A valid POST body for a server that cannot be reached (discovery fails fast)."""
    body: dict[str, Any] = {
        "serverName": name,
        "title": "Test Server",
        "description": f"The {name} server",
        "type": "streamable-http",
        "url": UNREACHABLE_URL,
        "tags": ["test"],
    }
    body.update(overrides)
    return body


async def insert_server(
    mongo_client: MongoClient,
    settings: Settings,
    *,
    name: str,
    author: str | ObjectId,
    scope: str = "private_user",
    status: str = "active",
    updated_at: datetime | None = None,
    **extra: Any,
) -> str:
    """Insert a server document directly (as the external app would) and return its id."""
    now = updated_at or datetime.now(UTC).replace(microsecond=0)
    document: dict[str, Any] = {
        "serverName": name,
        "config": {
            "title": "Raw Server",
            "description": f"raw {name}",
            "type": "streamable-http",
            "url": UNREACHABLE_URL,
            "requiresOAuth": False,
        },
        "author": ObjectId(author) if isinstance(author, str) else author,
        "scope": scope,
        "status": status,
        "path": f"/mcp/{name}",
        "tags": ["raw"],
        "numStars": 0,
        "createdAt": now,
        "updatedAt": now,
        "__v": 0,
    }
    document.update(extra)
    result = await mongo_client[settings.mongo_db]["mcpservers"].insert_one(document)
    return str(result.inserted_id)


async def stored(mongo_client: MongoClient, settings: Settings, server_id: str) -> dict[str, Any]:
    document = await mongo_client[settings.mongo_db]["mcpservers"].find_one(
        {"_id": ObjectId(server_id)}
    )
    assert document is not None
    return document
