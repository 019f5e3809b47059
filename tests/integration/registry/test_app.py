"""The application against a real MongoDB-wire server: probes, startup checks, interop."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from httpx import AsyncClient

from packages.database.connection import MongoClient
from packages.models import SCHEMA_VERSION, MCPServer
from packages.models.schema_check import SchemaVersionMismatchError
from registry.app import create_app
from registry.config import Settings
from tests.conftest import make_settings


async def test_health_answers_without_database_call(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_ready_reports_database_ok(client: AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


async def test_openapi_served(client: AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "MCP Gateway Registry"


async def test_unknown_route_uses_error_shape(client: AsyncClient) -> None:
    response = await client.get("/api/v1/does-not-exist")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "not_found"
    assert body["request_id"] == response.headers["x-request-id"]


async def test_startup_refuses_mismatched_schema_version(
    mongo_uri: str, db_name: str, tmp_path: Path
) -> None:
    settings = make_settings(
        mongo_uri=mongo_uri, db_name=db_name, data_dir=tmp_path, schema_version="v9.9.9"
    )
    app = create_app(settings)
    with pytest.raises(
        SchemaVersionMismatchError, match=re.escape("generate_schemas.py --version v9.9.9")
    ):
        async with app.router.lifespan_context(app):
            pass
    assert Settings().schema_version == SCHEMA_VERSION


async def test_update_keeps_fields_unknown_to_our_models(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    """The external app (or a newer schema) writes fields we do not model; they must survive.

    Both document-level writes also maintain ``updatedAt`` (x-timestamps); the test only
    checked that it was set. A query-level ``find_one(...).update(...)`` would not bump it
    (docs/schemas.md).
    """
    collection = mongo_client[settings.mongo_db]["mcpservers"]
    server_id = ObjectId()
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    await collection.insert_one(
        {
            "_id": server_id,
            "serverName": "interop",
            "config": {
                "type": "streamable-http",
                "url": "http://127.0.0.1:1/mcp",
                "title": "Interop",
                "requestHeaders": {"X-Tenant": "t1"},
            },
            "author": ObjectId(),
            "scope": "shared_app",
            "status": "active",
            "path": "/mcp/interop",
            "tenantId": "tenant-42",
            "normalizedServerName": "interop",
            "createdAt": long_ago,
            "updatedAt": long_ago,
            "__v": 0,
        }
    )
    before = datetime.now(UTC) - timedelta(seconds=1)

    server = await MCPServer.get(server_id)
    assert server is not None
    server.tags = ["updated"]
    await server.save()
    saved = await collection.find_one({"_id": server_id})
    assert saved is not None and saved["updatedAt"] >= before

    await collection.update_one({"_id": server_id}, {"$set": {"updatedAt": long_ago}})
    await server.update({"$set": {"numStars": 3}})

    stored = await collection.find_one({"_id": server_id})
    assert stored is not None
    assert stored["tenantId"] == "tenant-42"
    assert stored["normalizedServerName"] == "interop"
    assert stored["config"]["requestHeaders"] == {"X-Tenant": "t1"}
    assert stored["tags"] == ["updated"]
    assert stored["numStars"] == 3
    assert stored["createdAt"] == long_ago
    assert stored["updatedAt"] >= before
