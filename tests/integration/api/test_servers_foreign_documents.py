"""Documents the external app writes that our pinned models reject must not break the API."""

from __future__ import annotations

from bson import ObjectId
from httpx import AsyncClient

from packages.database.connection import MongoClient
from registry.config import Settings
from tests.factories import make_caller


async def test_list_and_get_server_with_newer_schema_title_no_500(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    """v0.0.32 allows Unicode titles; v0.0.31 models reject them. Lists skip, get says why."""
    admin = make_caller(settings, role="admin")
    foreign_id = ObjectId()
    await mongo_client[settings.mongo_db]["mcpservers"].insert_many(
        [
            {
                "_id": foreign_id,
                "serverName": "wetter",
                "config": {
                    "type": "sse",
                    "url": "http://127.0.0.1:9/sse",
                    "title": "Wetter-Dienst",
                },
                "author": ObjectId(admin.id),
                "scope": "shared_app",
                "status": "active",
                "path": "/mcp/wetter",
            },
            {
                "_id": ObjectId(),
                "serverName": "plain",
                "config": {"type": "sse", "url": "http://127.0.0.1:9/sse", "title": "Plain"},
                "author": ObjectId(admin.id),
                "scope": "shared_app",
                "status": "active",
                "path": "/mcp/plain",
            },
        ]
    )

    listed = await client.get("/api/v1/servers", headers=admin.headers)
    assert listed.status_code == 200
    assert [item["serverName"] for item in listed.json()["servers"]] == ["plain"]

    detail = await client.get(f"/api/v1/servers/{foreign_id}", headers=admin.headers)
    assert detail.status_code == 409
    body = detail.json()
    assert body["error"] == "incompatible_document"
    assert "config" in body["message"]

    other = make_caller(settings)
    hidden = await client.get(f"/api/v1/servers/{ObjectId()}", headers=other.headers)
    assert hidden.status_code == 404
