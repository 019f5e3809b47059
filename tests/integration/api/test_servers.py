"""Server CRUD over the API: exact fields, masking of secrets, stored documents, validation."""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId
from httpx import AsyncClient
from structlog.testing import capture_logs

from packages.database.connection import MongoClient
from packages.database.encryption import decrypt_value
from registry.config import Settings
from registry.metrics import REGISTRY
from tests.factories import Caller, make_caller
from tests.integration.api.server_data import (
    ENCRYPT_V2,
    SERVERS,
    UNREACHABLE_URL,
    insert_server,
    server_body,
    stored,
)

API_KEY = "sk-live-0123456789abcdef"
CLIENT_SECRET = "oauth-client-secret-0123456789"
OAUTH = {
    "authorization_url": "https://auth.example.com/authorize",
    "token_url": "https://auth.example.com/token",
    "client_id": "client-1",
    "client_secret": CLIENT_SECRET,
    "scope": "repo user",
}


@pytest.fixture
def admin(settings: Settings) -> Caller:
    return make_caller(settings, role="admin")


@pytest.fixture
def user(settings: Settings) -> Caller:
    return make_caller(settings, role="user")


async def create(client: AsyncClient, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(SERVERS, json=body, headers=caller.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def secret_body(name: str) -> dict[str, Any]:
    return server_body(
        name,
        apiKey={"key": API_KEY, "source": "admin", "authorization_type": "bearer"},
        oauth=OAUTH,
        requiresOAuth=True,
    )


def assert_masked(body: dict[str, Any]) -> None:
    assert body["apiKey"]["key"] == "***"
    assert body["oauth"]["client_secret"] == "***"
    assert API_KEY not in str(body)
    assert CLIENT_SECRET not in str(body)


async def test_register_server_unreachable_returns_exact_fields(
    client: AsyncClient, user: Caller
) -> None:
    body = await create(client, user, server_body("alpha"))

    assert ObjectId.is_valid(body["id"])
    assert body["serverName"] == "alpha"
    assert body["title"] == "Test Server"
    assert body["description"] == "The alpha server"
    assert body["type"] == "streamable-http"
    assert body["url"] == UNREACHABLE_URL
    assert body["apiKey"] is None
    assert body["requiresOAuth"] is False
    assert body["author"] == user.id
    assert body["scope"] == "private_user"
    assert body["status"] == "error"
    assert body["path"] == "/mcp/alpha"
    assert body["tags"] == ["test"]
    assert body["numTools"] == 0
    assert body["numStars"] == 0
    assert body["tools"] is None
    assert body["toolFunctions"] == {}
    assert body["lastConnected"] is None
    assert body["lastError"].endswith("Z")
    assert body["errorMessage"] == "Could not connect to upstream at http://127.0.0.1:9/mcp"
    assert body["connectionState"] == "disconnected"
    assert body["createdAt"] == body["updatedAt"]
    assert body["createdAt"].endswith("Z")


async def test_register_server_stores_shared_schema_document(
    client: AsyncClient, user: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    body = await create(client, user, server_body("shape", timeout=30000))

    document = await stored(mongo_client, settings, body["id"])
    assert document["author"] == ObjectId(user.id)
    assert document["__v"] == 0
    assert document["config"] == {
        "title": "Test Server",
        "description": "The shape server",
        "type": "streamable-http",
        "url": UNREACHABLE_URL,
        "requiresOAuth": False,
        "timeout": 30000,
    }
    assert document["status"] == "error"
    assert document["errorMessage"].startswith("Could not connect")
    assert document["createdAt"] == document["updatedAt"]
    assert None not in document["config"].values()


async def test_secrets_masked_in_every_response(client: AsyncClient, admin: Caller) -> None:
    created = await create(client, admin, secret_body("masked"))
    server_id = created["id"]
    assert_masked(created)
    assert created["apiKey"] == {
        "key": "***",
        "source": "admin",
        "authorization_type": "bearer",
        "custom_header": None,
    }

    fetched = (await client.get(f"{SERVERS}/{server_id}", headers=admin.headers)).json()
    assert_masked(fetched)
    listed = (await client.get(SERVERS, headers=admin.headers)).json()["servers"][0]
    assert_masked(listed)
    patched = (
        await client.patch(
            f"{SERVERS}/{server_id}", json={"description": "new"}, headers=admin.headers
        )
    ).json()
    assert_masked(patched)
    toggled = await client.post(
        f"{SERVERS}/{server_id}/toggle", json={"enabled": False}, headers=admin.headers
    )
    assert API_KEY not in toggled.text and CLIENT_SECRET not in toggled.text
    refreshed = await client.post(f"{SERVERS}/{server_id}/refresh", headers=admin.headers)
    assert API_KEY not in refreshed.text and CLIENT_SECRET not in refreshed.text
    tools = await client.get(f"{SERVERS}/{server_id}/tools", headers=admin.headers)
    assert API_KEY not in tools.text and CLIENT_SECRET not in tools.text


async def test_secrets_stored_encrypted_and_decryptable(
    client: AsyncClient, admin: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    created = await create(client, admin, secret_body("encrypted"))

    config = (await stored(mongo_client, settings, created["id"]))["config"]
    assert ENCRYPT_V2.match(config["apiKey"]["key"])
    assert ENCRYPT_V2.match(config["oauth"]["client_secret"])
    assert decrypt_value(config["apiKey"]["key"]) == API_KEY
    assert decrypt_value(config["oauth"]["client_secret"]) == CLIENT_SECRET


async def test_update_server_omitting_or_masking_secret_keeps_it(
    client: AsyncClient, admin: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    created = await create(client, admin, secret_body("keeper"))
    before = (await stored(mongo_client, settings, created["id"]))["config"]

    response = await client.patch(
        f"{SERVERS}/{created['id']}",
        json={
            "apiKey": {
                "key": "***",
                "source": "admin",
                "authorization_type": "custom",
                "custom_header": "X-Api-Key",
            },
            "oauth": {"client_id": "client-2"},
        },
        headers=admin.headers,
    )

    assert response.status_code == 200, response.text
    assert response.json()["apiKey"] == {
        "key": "***",
        "source": "admin",
        "authorization_type": "custom",
        "custom_header": "X-Api-Key",
    }
    after = (await stored(mongo_client, settings, created["id"]))["config"]
    assert after["apiKey"]["key"] == before["apiKey"]["key"]
    assert after["oauth"]["client_secret"] == before["oauth"]["client_secret"]
    assert after["oauth"]["client_id"] == "client-2"
    assert after["oauth"]["token_url"] == OAUTH["token_url"]


async def test_update_server_new_secret_is_encrypted(
    client: AsyncClient, admin: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    created = await create(client, admin, secret_body("rotate"))

    response = await client.patch(
        f"{SERVERS}/{created['id']}",
        json={"apiKey": {"key": "sk-rotated", "source": "admin", "authorization_type": "basic"}},
        headers=admin.headers,
    )

    assert response.status_code == 200
    key = (await stored(mongo_client, settings, created["id"]))["config"]["apiKey"]["key"]
    assert ENCRYPT_V2.match(key)
    assert decrypt_value(key) == "sk-rotated"


async def test_update_server_keeps_fields_unknown_to_us(
    client: AsyncClient, user: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    server_id = await insert_server(
        mongo_client, settings, name="foreign", author=user.id, tenantId="t-1"
    )
    await mongo_client[settings.mongo_db]["mcpservers"].update_one(
        {"_id": ObjectId(server_id)}, {"$set": {"config.requestHeaders": {"X-Tenant": "t1"}}}
    )

    response = await client.patch(
        f"{SERVERS}/{server_id}", json={"title": "Renamed", "tags": []}, headers=user.headers
    )

    assert response.status_code == 200
    document = await stored(mongo_client, settings, server_id)
    assert document["tenantId"] == "t-1"
    assert document["config"]["requestHeaders"] == {"X-Tenant": "t1"}
    assert document["config"]["title"] == "Renamed"
    assert document["tags"] == []
    assert document["updatedAt"] > document["createdAt"]


async def test_update_server_null_removes_optional_field(
    client: AsyncClient, user: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    created = await create(client, user, server_body("nullable"))

    response = await client.patch(
        f"{SERVERS}/{created['id']}", json={"description": None}, headers=user.headers
    )

    assert response.status_code == 200
    assert response.json()["description"] is None
    assert "description" not in (await stored(mongo_client, settings, created["id"]))["config"]


async def test_crud_round_trip(
    client: AsyncClient, user: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    created = await create(client, user, server_body("roundtrip"))
    server_id = created["id"]

    fetched = await client.get(f"{SERVERS}/{server_id}", headers=user.headers)
    assert fetched.status_code == 200
    assert fetched.json() == created

    patched = await client.patch(
        f"{SERVERS}/{server_id}",
        json={"description": "Updated", "tags": ["a", "b", "a"], "updatedAt": created["updatedAt"]},
        headers=user.headers,
    )
    assert patched.status_code == 200
    assert patched.json()["description"] == "Updated"
    assert patched.json()["tags"] == ["a", "b"]
    assert patched.json()["updatedAt"] > created["updatedAt"]

    toggled = await client.post(
        f"{SERVERS}/{server_id}/toggle", json={"enabled": False}, headers=user.headers
    )
    assert toggled.status_code == 200
    assert toggled.json() == {
        "id": server_id,
        "serverName": "roundtrip",
        "status": "inactive",
        "enabled": False,
        "message": "Server disabled successfully",
        "updatedAt": toggled.json()["updatedAt"],
    }

    deleted = await client.delete(f"{SERVERS}/{server_id}", headers=user.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    missing = await client.get(f"{SERVERS}/{server_id}", headers=user.headers)
    assert missing.status_code == 404
    assert missing.json()["message"] == "Server not found"


async def test_mutations_write_audit_entries(
    client: AsyncClient, admin: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    created = await create(client, admin, secret_body("audited"))
    server_id = created["id"]
    await client.patch(f"{SERVERS}/{server_id}", json={"title": "X"}, headers=admin.headers)
    await client.post(
        f"{SERVERS}/{server_id}/toggle", json={"enabled": True}, headers=admin.headers
    )
    await client.post(f"{SERVERS}/{server_id}/refresh", headers=admin.headers)
    await client.delete(f"{SERVERS}/{server_id}", headers=admin.headers)

    entries = await (
        mongo_client[settings.mongo_db]["audit_logs"]
        .find({"entity_id": ObjectId(server_id)})
        .sort("timestamp", 1)
        .to_list()
    )
    assert [entry["action"] for entry in entries] == [
        "create",
        "update",
        "toggle",
        "refresh",
        "delete",
    ]
    assert all(
        entry["user_id"] == ObjectId(admin.id) and entry["entity_type"] == "server"
        for entry in entries
    )
    assert entries[0]["changes"]["before"] is None
    assert entries[0]["changes"]["after"]["config"]["apiKey"]["key"] == "***"
    assert entries[1]["changes"]["before"]["config"]["title"] == "Test Server"
    assert entries[1]["changes"]["after"]["config"]["title"] == "X"
    assert entries[4]["changes"]["after"] is None
    assert "sk-live" not in str(entries)


async def test_register_server_duplicate_name_or_path_conflicts(
    client: AsyncClient, user: Caller
) -> None:
    await create(client, user, server_body("dup"))

    same_name = await client.post(SERVERS, json=server_body("dup"), headers=user.headers)
    same_path = await client.post(
        SERVERS, json=server_body("other", path="/mcp/dup"), headers=user.headers
    )

    assert same_name.status_code == 409
    assert same_name.json()["error"] == "conflict"
    assert same_name.json()["message"] == "A server with this serverName already exists"
    assert same_path.status_code == 409
    assert same_path.json()["message"] == "A server with this path already exists"


async def test_update_server_path_taken_conflicts(client: AsyncClient, user: Caller) -> None:
    await create(client, user, server_body("first"))
    second = await create(client, user, server_body("second"))

    response = await client.patch(
        f"{SERVERS}/{second['id']}", json={"path": "/mcp/first"}, headers=user.headers
    )

    assert response.status_code == 409
    assert response.json()["message"] == "A server with this path already exists"


@pytest.mark.parametrize(
    "server_id", ["nope", "123", "zzzzzzzzzzzzzzzzzzzzzzzz", "6718a2c4e1f03b7d9c00ffff"]
)
async def test_get_server_malformed_or_unknown_id_not_found(
    client: AsyncClient, user: Caller, server_id: str
) -> None:
    for method, suffix in (
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/tools"),
        ("POST", "/refresh"),
        ("POST", "/toggle"),
    ):
        json_body = (
            {"enabled": True} if suffix == "/toggle" else ({} if method == "PATCH" else None)
        )
        response = await client.request(
            method, f"{SERVERS}/{server_id}{suffix}", json=json_body, headers=user.headers
        )
        assert response.status_code == 404, (method, suffix)
        assert response.json()["error"] == "not_found"
        assert response.json()["message"] == "Server not found"


@pytest.mark.parametrize(
    "overrides",
    [
        {"serverName": "bad name"},
        {"serverName": "-leading"},
        {"serverName": "x" * 65},
        {"title": "Bad-Title!"},
        {"type": "stdio"},
        {"type": "websocket"},
        {"url": "ftp://example.com/mcp"},
        {"url": "http://user:pass@example.com/mcp"},
        {"url": "not a url"},
        {"path": "/other/x"},
        {"path": "/mcp/../etc"},
        {"path": "/mcp/"},
        {"scope": "public"},
        {"tags": ["x" * 65]},
        {"tags": ["t"] * 33},
        {"apiKey": {"key": "k", "source": "admin", "authorization_type": "custom"}},
        {"apiKey": {"source": "admin", "authorization_type": "bearer"}},
        {"apiKey": {"key": "***", "source": "user", "authorization_type": "bearer"}},
        {"apiKey": {"key": "a\nb", "source": "admin", "authorization_type": "bearer"}},
        {"oauth": {"token_url": "javascript:alert(1)"}},
        {"timeout": 0},
        {"headers": {"Bad Header": "x"}},
        {"status": "active"},
        {"unexpected": True},
    ],
)
async def test_register_server_invalid_body_is_422(
    client: AsyncClient, user: Caller, overrides: dict[str, Any]
) -> None:
    response = await client.post(
        SERVERS, json=server_body("valid", **overrides), headers=user.headers
    )

    assert response.status_code == 422, overrides
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["message"] == "Request validation failed"
    assert body["details"]
    assert "sk-" not in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"serverName": "renamed"},
        {"url": None},
        {"scope": None},
        {"status": "error"},
        {"updatedAt": "yesterday"},
    ],
)
async def test_update_server_invalid_body_is_422(
    client: AsyncClient, user: Caller, body: dict[str, Any]
) -> None:
    created = await create(client, user, server_body("patchme"))

    response = await client.patch(f"{SERVERS}/{created['id']}", json=body, headers=user.headers)

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_list_servers_paginates(
    client: AsyncClient, user: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    for index in range(5):
        await insert_server(mongo_client, settings, name=f"page{index}", author=user.id)

    first = (await client.get(SERVERS, params={"per_page": 2}, headers=user.headers)).json()
    last = (
        await client.get(SERVERS, params={"per_page": 2, "page": 3}, headers=user.headers)
    ).json()
    beyond = (
        await client.get(SERVERS, params={"per_page": 2, "page": 4}, headers=user.headers)
    ).json()

    assert first["pagination"] == {"total": 5, "page": 1, "per_page": 2, "total_pages": 3}
    assert len(first["servers"]) == 2
    assert "toolFunctions" not in first["servers"][0]
    assert len(last["servers"]) == 1
    assert beyond["servers"] == []
    assert beyond["pagination"]["total"] == 5


@pytest.mark.parametrize(
    "params",
    [
        {"page": 0},
        {"per_page": 0},
        {"per_page": 101},
        {"page": "x"},
        {"scope": "all"},
        {"status": "broken"},
        {"author": "not-an-id"},
        {"query": "q" * 201},
    ],
)
async def test_list_servers_bad_parameters_are_422(
    client: AsyncClient, admin: Caller, params: dict[str, Any]
) -> None:
    response = await client.get(SERVERS, params=params, headers=admin.headers)

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_list_servers_query_matches_literally(
    client: AsyncClient, user: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    await insert_server(
        mongo_client,
        settings,
        name="dotted",
        author=user.id,
        config={"type": "sse", "url": UNREACHABLE_URL, "description": "has a.b( inside"},
    )
    await insert_server(
        mongo_client,
        settings,
        name="axb",
        author=user.id,
        config={"type": "sse", "url": UNREACHABLE_URL, "description": "has axb( inside"},
    )
    await insert_server(mongo_client, settings, name="tagged", author=user.id, tags=["GitHub"])

    literal = await client.get(SERVERS, params={"query": "a.b("}, headers=user.headers)
    by_tag = await client.get(SERVERS, params={"query": "github"}, headers=user.headers)
    by_name = await client.get(SERVERS, params={"query": "AXB"}, headers=user.headers)
    star = await client.get(SERVERS, params={"query": ".*"}, headers=user.headers)

    assert literal.status_code == 200
    assert [s["serverName"] for s in literal.json()["servers"]] == ["dotted"]
    assert [s["serverName"] for s in by_tag.json()["servers"]] == ["tagged"]
    assert [s["serverName"] for s in by_name.json()["servers"]] == ["axb"]
    assert star.json()["servers"] == []


async def test_list_servers_filters_and_sorts_by_update(
    client: AsyncClient, admin: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    owner = str(ObjectId())
    await insert_server(mongo_client, settings, name="old", author=owner, status="inactive")
    newer = await create(client, admin, server_body("newer", scope="shared_app"))

    everything = (await client.get(SERVERS, headers=admin.headers)).json()["servers"]
    inactive = await client.get(SERVERS, params={"status": "inactive"}, headers=admin.headers)
    shared = await client.get(SERVERS, params={"scope": "shared_app"}, headers=admin.headers)
    by_author = await client.get(SERVERS, params={"author": owner}, headers=admin.headers)

    assert [s["serverName"] for s in everything] == ["newer", "old"]
    assert [s["serverName"] for s in inactive.json()["servers"]] == ["old"]
    assert [s["id"] for s in shared.json()["servers"]] == [newer["id"]]
    assert [s["author"] for s in by_author.json()["servers"]] == [owner]


async def test_list_servers_author_filter_forbidden_for_users(
    client: AsyncClient, user: Caller
) -> None:
    response = await client.get(SERVERS, params={"author": user.id}, headers=user.headers)

    assert response.status_code == 403
    assert response.json()["message"] == "Only admins can filter by author"


async def test_register_server_counts_operation_and_logs_without_secret(
    client: AsyncClient, admin: Caller
) -> None:
    labels = {"operation": "register", "status": "error"}
    before = REGISTRY.get_sample_value("mcp_server_operations_total", labels) or 0.0

    with capture_logs() as logs:
        created = await create(client, admin, secret_body("counted"))

    after = REGISTRY.get_sample_value("mcp_server_operations_total", labels)
    assert after == before + 1  # discovery failed: the upstream is unreachable
    registered = [entry for entry in logs if entry["event"] == "server_registered"]
    assert len(registered) == 1
    assert registered[0]["server_id"] == created["id"]
    assert registered[0]["status"] == "error"
    assert API_KEY not in str(logs) and CLIENT_SECRET not in str(logs)


@pytest.mark.parametrize("enabled", ["yes", 1, "false", None])
async def test_toggle_server_non_boolean_is_422(
    client: AsyncClient, admin: Caller, mongo_client: MongoClient, settings: Settings, enabled: Any
) -> None:
    """``{"enabled": "yes"}`` and ``{"enabled": 1}`` switched servers on by lax coercion."""
    created = await create(client, admin, server_body("strict"))

    response = await client.post(
        f"{SERVERS}/{created['id']}/toggle", json={"enabled": enabled}, headers=admin.headers
    )

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert (await stored(mongo_client, settings, created["id"]))["status"] == created["status"]


async def test_audit_entries_mask_static_header_values(
    client: AsyncClient, admin: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    """Header values were masked in responses but stored verbatim in the audit trail."""
    created = await create(
        client, admin, server_body("headered", headers={"X-Api-Key": "hdr-secret-4242"})
    )
    await client.patch(
        f"{SERVERS}/{created['id']}",
        json={"headers": {"X-Api-Key": "hdr-secret-5353"}},
        headers=admin.headers,
    )

    entries = await mongo_client[settings.mongo_db]["audit_logs"].find({}).to_list()
    listed = await client.get("/api/v1/audit-logs", headers=admin.headers)

    assert [entry["action"] for entry in entries] == ["create", "update"]
    assert entries[1]["changes"]["before"]["config"]["headers"] == {"X-Api-Key": "***"}
    assert entries[1]["changes"]["after"]["config"]["headers"] == {"X-Api-Key": "***"}
    assert "hdr-secret" not in str(entries)
    assert "hdr-secret" not in listed.text
    document = await stored(mongo_client, settings, created["id"])
    assert document["config"]["headers"] == {"X-Api-Key": "hdr-secret-5353"}


async def test_mutations_by_upper_case_id_audited_under_one_id(
    client: AsyncClient, admin: Caller, mongo_client: MongoClient, settings: Settings
) -> None:
    """An id spelled in upper case split a server's audit history in two."""
    created = await create(client, admin, server_body("shouty"))
    upper = created["id"].upper()

    patched = await client.patch(
        f"{SERVERS}/{upper}", json={"title": "Loud"}, headers=admin.headers
    )
    toggled = await client.post(
        f"{SERVERS}/{upper}/toggle", json={"enabled": False}, headers=admin.headers
    )
    history = await client.get(
        "/api/v1/audit-logs", params={"entity_id": created["id"]}, headers=admin.headers
    )
    shouted = await client.get(
        "/api/v1/audit-logs", params={"entity_id": upper}, headers=admin.headers
    )

    assert (patched.status_code, toggled.status_code) == (200, 200)
    assert [entry["action"] for entry in history.json()["audit_logs"]] == [
        "toggle",
        "update",
        "create",
    ]
    assert {entry["entity_id"] for entry in history.json()["audit_logs"]} == {created["id"]}
    assert shouted.json()["audit_logs"] == history.json()["audit_logs"]
