"""MongoDB client construction and health checks (PyMongo's async client)."""

from __future__ import annotations

from typing import Any

import pymongo
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


async def close_client(client: MongoClient, *, timeout_seconds: float = 1.0) -> None:
    """Close ``client``, spending at most about ``timeout_seconds`` on the server.

    ``close()`` first ends the client's server sessions (an ``endSessions`` command). With the
    server gone that command waits for server selection, ``serverSelectionTimeoutMS`` (10 s by
    default), so every shutdown after the database died took 10 s. The client-side operation
    timeout bounds it; PyMongo ignores endSessions failures, and the sockets and monitors are
    closed either way.
    """
    with pymongo.timeout(timeout_seconds):
        await client.close()


async def ping(client: MongoClient, *, timeout_seconds: float = 5.0) -> bool:
    """True when the server answers a ping within ``timeout_seconds``.

    The whole operation is bounded (PyMongo's client-side operation timeout): a server that
    accepts the connection but never answers must not hang a readiness probe or a startup.
    """
    try:
        with pymongo.timeout(timeout_seconds):
            await client.admin.command("ping")
    except PyMongoError:
        return False
    return True
