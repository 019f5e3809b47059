"""MongoDB client construction and health checks (PyMongo's async client)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

MongoClient = AsyncMongoClient[dict[str, Any]]


def create_client(
    uri: str, *, timeout_seconds: float = 10.0, app_name: str = "mcp-registry"
) -> MongoClient:
    """A client with bounded timeouts and tz-aware datetimes (all stored times are UTC)."""
    timeout_ms = int(timeout_seconds * 1000)
    return AsyncMongoClient(
        uri,
        tz_aware=True,
        appname=app_name,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
    )


async def ping(client: MongoClient) -> bool:
    """True when the server answers a ping."""
    try:
        await client.admin.command("ping")
    except PyMongoError:
        return False
    return True
