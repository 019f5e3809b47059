"""``GET /api/v1/audit-logs``: admin-only, filters, pagination, newest first, redaction."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient

from packages.database.connection import MongoClient
from registry.auth import UserContext
from registry.config import Settings
from registry.services.audit import record_audit
from tests.factories import make_caller

AUDIT = "/api/v1/audit-logs"

ALICE = UserContext(user_id="64b000000000000000000001", role="admin", username="alice")
BOB = UserContext(user_id="64b000000000000000000002", role="user", username="bob")
SERVER_A = "64c0000000000000000000aa"
SERVER_B = "64c0000000000000000000bb"


async def _seed() -> list[str]:
    """Five entries, oldest first; returns their ids in insertion order."""
    plan: list[tuple[str, str, UserContext]] = [
        ("create", SERVER_A, ALICE),
        ("update", SERVER_A, ALICE),
        ("create", SERVER_B, BOB),
        ("toggle", SERVER_B, BOB),
        ("delete", SERVER_A, ALICE),
    ]
    ids = []
    for action, entity_id, actor in plan:
        entry = await record_audit(
            action=action,
            entity_type="server",
            entity_id=entity_id,
            actor=actor,
            before={"status": "active"},
            after={"status": "inactive"},
        )
        ids.append(str(entry.id))
    return ids


def _ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["audit_logs"]]


async def test_list_audit_logs_newest_first(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    ids = await _seed()
    admin = make_caller(settings, role="admin")

    response = await client.get(AUDIT, headers=admin.headers)

    assert response.status_code == 200
    body = response.json()
    assert _ids(body) == list(reversed(ids))
    assert body["pagination"] == {"total": 5, "page": 1, "per_page": 20, "total_pages": 1}
    newest = body["audit_logs"][0]
    assert set(newest) == {
        "id",
        "action",
        "entity_type",
        "entity_id",
        "user_id",
        "changes",
        "request_id",
        "timestamp",
    }
    assert newest["action"] == "delete"
    assert newest["entity_type"] == "server"
    assert newest["entity_id"] == SERVER_A
    assert newest["user_id"] == ALICE.user_id
    assert newest["changes"] == {"before": {"status": "active"}, "after": {"status": "inactive"}}


async def test_list_audit_logs_filters_combine(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    ids = await _seed()
    admin = make_caller(settings, role="admin")

    by_entity = await client.get(AUDIT, params={"entity_id": SERVER_A}, headers=admin.headers)
    by_user = await client.get(AUDIT, params={"user_id": BOB.user_id}, headers=admin.headers)
    by_action = await client.get(AUDIT, params={"action": "create"}, headers=admin.headers)
    combined = await client.get(
        AUDIT,
        params={"entity_id": SERVER_A, "action": "update", "entity_type": "server"},
        headers=admin.headers,
    )
    other_type = await client.get(AUDIT, params={"entity_type": "token"}, headers=admin.headers)

    assert _ids(by_entity.json()) == [ids[4], ids[1], ids[0]]
    assert _ids(by_user.json()) == [ids[3], ids[2]]
    assert _ids(by_action.json()) == [ids[2], ids[0]]
    assert _ids(combined.json()) == [ids[1]]
    assert other_type.json() == {
        "audit_logs": [],
        "pagination": {"total": 0, "page": 1, "per_page": 20, "total_pages": 0},
    }


async def test_list_audit_logs_filter_value_is_not_an_operator(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    await _seed()
    admin = make_caller(settings, role="admin")

    response = await client.get(AUDIT, params={"entity_id": '{"$ne": null}'}, headers=admin.headers)

    assert response.status_code == 200
    assert response.json()["pagination"]["total"] == 0


async def test_list_audit_logs_paginates(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    ids = await _seed()
    admin = make_caller(settings, role="admin")

    pages = [
        await client.get(AUDIT, params={"page": n, "per_page": 2}, headers=admin.headers)
        for n in (1, 2, 3, 4)
    ]

    newest_first = list(reversed(ids))
    assert [_ids(page.json()) for page in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:5],
        [],
    ]
    assert pages[2].json()["pagination"] == {
        "total": 5,
        "page": 3,
        "per_page": 2,
        "total_pages": 3,
    }


async def test_list_audit_logs_invalid_paging_rejected(
    client: AsyncClient, settings: Settings
) -> None:
    admin = make_caller(settings, role="admin")

    for params in ({"page": 0}, {"per_page": 0}, {"per_page": 101}, {"page": "x"}):
        response = await client.get(AUDIT, params=params, headers=admin.headers)
        assert response.status_code == 422, params
        assert response.json()["error"] == "validation_error"


async def test_list_audit_logs_redacts_secrets(
    app: FastAPI,
    client: AsyncClient,
    mongo_client: MongoClient,
    settings: Settings,
) -> None:
    await record_audit(
        action="update",
        entity_type="server",
        entity_id=SERVER_A,
        actor=ALICE,
        before={"config": {"apiKey": {"key": "old-secret-key", "source": "admin"}}},
        after={
            "config": {
                "apiKey": {"key": "new-secret-key", "source": "admin"},
                "oauth": {"client_id": "cid", "client_secret": "s3cr3t"},
            }
        },
    )
    admin = make_caller(settings, role="admin")

    response = await client.get(AUDIT, headers=admin.headers)

    assert response.status_code == 200
    changes = response.json()["audit_logs"][0]["changes"]
    assert changes == {
        "before": {"config": {"apiKey": {"key": "***", "source": "admin"}}},
        "after": {
            "config": {
                "apiKey": {"key": "***", "source": "admin"},
                "oauth": {"client_id": "cid", "client_secret": "***"},
            }
        },
    }
    assert "secret-key" not in response.text
    assert "s3cr3t" not in response.text
    stored = await mongo_client[settings.mongo_db]["audit_logs"].find_one({})
    assert stored is not None
    assert stored["changes"] == changes


async def test_list_audit_logs_as_user_forbidden(client: AsyncClient, settings: Settings) -> None:
    user = make_caller(settings, role="user")

    response = await client.get(AUDIT, headers=user.headers)

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


async def test_list_audit_logs_without_token_unauthorized(client: AsyncClient) -> None:
    response = await client.get(AUDIT)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
