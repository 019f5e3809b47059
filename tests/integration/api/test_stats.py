"""``GET /api/v1/servers/stats``: exact figures over raw documents, admin-only access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from httpx import AsyncClient

from packages.database.connection import MongoClient
from registry.config import Settings
from registry.services.stats import server_statistics
from tests.factories import expired_token, make_caller

STATS = "/api/v1/servers/stats"


def _server(
    name: str, *, scope: str, author: ObjectId, transport: str, **fields: Any
) -> dict[str, Any]:
    return {
        "serverName": name,
        "config": {"type": transport, "url": f"http://127.0.0.1:1/{name}", "title": name},
        "author": author,
        "scope": scope,
        "path": f"/mcp/{name}",
        **fields,
    }


def _token(kind: str, *, user: ObjectId, expires_at: datetime) -> dict[str, Any]:
    return {
        "userId": user,
        "type": kind,
        "identifier": "mcp:example",
        "token": "ciphertext",
        "createdAt": expires_at - timedelta(hours=1),
        "expiresAt": expires_at,
    }


async def test_get_stats_counts_inserted_documents(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    db = mongo_client[settings.mongo_db]
    alice, bob, carol, dave, erin, frank = (ObjectId() for _ in range(6))
    await db["mcpservers"].insert_many(
        [
            _server("s1", scope="shared_app", author=alice, transport="streamable-http",
                    status="active", numTools=3),
            _server("s2", scope="shared_user", author=alice, transport="http",
                    status="inactive", numTools=2),
            _server("s3", scope="private_user", author=bob, transport="sse", status="error"),
            # No status: the shared schema's default is "active".
            _server("s4", scope="private_user", author=bob, transport="sse", numTools=5),
        ]
    )  # fmt: skip
    later = datetime.now(UTC) + timedelta(days=1)
    await db["tokens"].insert_many(
        [
            _token("mcp_oauth", user=carol, expires_at=later),
            _token("mcp_oauth_refresh", user=alice, expires_at=later),
            _token("mcp_api_key", user=dave, expires_at=later),
            _token("mcp_oauth_client", user=erin, expires_at=later),
            # Not MCP credentials (the external app's e-mail verification, a typeless reset
            # record): not counted, and their holder is not an active user. The typeless one
            # showed up as a "None" type.
            _token("verify", user=frank, expires_at=later),
            {k: v for k, v in _token("x", user=frank, expires_at=later).items() if k != "type"},
        ]
    )
    admin = make_caller(settings, role="admin")

    response = await client.get(STATS, headers=admin.headers)

    assert response.status_code == 200
    assert response.json() == {
        "total_servers": 4,
        "servers_by_scope": {"shared_app": 1, "shared_user": 1, "private_user": 2},
        "servers_by_status": {"active": 2, "inactive": 1, "error": 1},
        "servers_by_transport": {"streamable-http": 2, "sse": 2},
        "total_tokens": 4,
        "tokens_by_type": {
            "oauth_access": 1,
            "oauth_refresh": 1,
            "api_key": 1,
            "oauth_client": 1,
        },
        "active_tokens": 4,
        "expired_tokens": 0,
        "active_users": 5,
        "total_tools": 10,
    }


async def test_get_stats_empty_database_reports_zeros(
    client: AsyncClient, settings: Settings
) -> None:
    admin = make_caller(settings, role="admin")

    response = await client.get(STATS, headers=admin.headers)

    assert response.status_code == 200
    assert response.json() == {
        "total_servers": 0,
        "servers_by_scope": {"shared_app": 0, "shared_user": 0, "private_user": 0},
        "servers_by_status": {"active": 0, "inactive": 0, "error": 0},
        "servers_by_transport": {"streamable-http": 0, "sse": 0},
        "total_tokens": 0,
        "tokens_by_type": {"oauth_access": 0, "oauth_refresh": 0, "api_key": 0},
        "active_tokens": 0,
        "expired_tokens": 0,
        "active_users": 0,
        "total_tools": 0,
    }


async def test_server_statistics_expired_tokens_do_not_make_active_users(
    app: object, mongo_client: MongoClient, settings: Settings
) -> None:
    """Expiry is judged at ``now``; a user whose only token expired is not active."""
    db = mongo_client[settings.mongo_db]
    now = datetime.now(UTC)
    author, holder, lapsed = ObjectId(), ObjectId(), ObjectId()
    await db["mcpservers"].insert_one(
        _server("only", scope="private_user", author=author, transport="sse", status="active")
    )
    await db["tokens"].insert_many(
        [
            _token("mcp_oauth", user=holder, expires_at=now + timedelta(hours=3)),
            _token("mcp_api_key", user=lapsed, expires_at=now + timedelta(hours=1)),
        ]
    )

    stats = await server_statistics(now=now + timedelta(hours=2))

    assert stats.total_tokens == 2
    assert stats.active_tokens == 1
    assert stats.expired_tokens == 1
    assert stats.active_users == 2
    assert stats.total_servers == 1


async def test_get_stats_as_user_forbidden(client: AsyncClient, settings: Settings) -> None:
    user = make_caller(settings, role="user")

    response = await client.get(STATS, headers=user.headers)

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


async def test_get_stats_without_token_unauthorized(client: AsyncClient) -> None:
    response = await client.get(STATS)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_get_stats_expired_token_unauthorized(
    client: AsyncClient, settings: Settings
) -> None:
    token = expired_token(settings, role="admin")

    response = await client.get(STATS, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
