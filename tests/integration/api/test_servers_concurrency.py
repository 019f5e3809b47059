"""Optimistic concurrency of PATCH /api/v1/servers/{id} (design 004 "Update Server", 409)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from httpx import AsyncClient

from packages.database.connection import MongoClient
from registry.config import Settings
from tests.factories import make_caller
from tests.integration.api.server_data import SERVERS, insert_server, stored

STAMP = datetime(2026, 1, 3, 15, 45, tzinfo=UTC)


async def test_update_server_ten_concurrent_patches_exactly_one_wins(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    """Ten writers holding the same updatedAt: one 200, nine 409, no change lost silently."""
    author = make_caller(settings, role="user")
    server_id = await insert_server(
        mongo_client, settings, name="racy", author=author.id, updated_at=STAMP
    )

    async def patch(index: int) -> tuple[int, dict[str, object]]:
        response = await client.patch(
            f"{SERVERS}/{server_id}",
            json={"description": f"writer {index}", "updatedAt": "2026-01-03T15:45:00Z"},
            headers=author.headers,
        )
        body: dict[str, object] = response.json()
        return response.status_code, body

    results = await asyncio.gather(*(patch(index) for index in range(10)))

    assert Counter(status for status, _ in results) == {200: 1, 409: 9}
    winner = next(body for status, body in results if status == 200)
    document = await stored(mongo_client, settings, server_id)
    assert document["config"]["description"] == winner["description"]
    assert document["updatedAt"] > STAMP
    for status, body in results:
        if status == 409:
            assert body["error"] == "conflict"
            assert body["message"] == "Server was modified by another process"
            assert body["provided_updated_at"] == "2026-01-03T15:45:00Z"
            assert body["current_updated_at"] is not None
            current = datetime.fromisoformat(str(body["current_updated_at"]))
            assert current == document["updatedAt"]


async def test_update_server_stale_updated_at_conflicts(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    author = make_caller(settings, role="user")
    server_id = await insert_server(
        mongo_client, settings, name="stale", author=author.id, updated_at=STAMP
    )

    response = await client.patch(
        f"{SERVERS}/{server_id}",
        json={"title": "New", "updatedAt": "2026-01-01T00:00:00Z"},
        headers=author.headers,
    )

    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "conflict"
    assert body["message"] == "Server was modified by another process"
    assert datetime.fromisoformat(body["current_updated_at"]) == STAMP
    assert datetime.fromisoformat(body["provided_updated_at"]) == datetime(2026, 1, 1, tzinfo=UTC)
    assert (await stored(mongo_client, settings, server_id))["config"]["title"] == "Raw Server"


async def test_update_server_without_updated_at_applies(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    author = make_caller(settings, role="user")
    server_id = await insert_server(
        mongo_client, settings, name="plain", author=author.id, updated_at=STAMP
    )

    responses = await asyncio.gather(
        *(
            client.patch(f"{SERVERS}/{server_id}", json={"tags": [f"t{i}"]}, headers=author.headers)
            for i in range(5)
        )
    )

    assert [response.status_code for response in responses] == [200] * 5
    stamps = sorted(response.json()["updatedAt"] for response in responses)
    assert len(set(stamps)) == 5, "every write gets a distinct, later updatedAt"
    assert (await stored(mongo_client, settings, server_id))["tags"][0] in {
        f"t{i}" for i in range(5)
    }


async def test_update_server_returned_updated_at_round_trips(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    """The updatedAt a response shows is accepted by the next PATCH (ms precision)."""
    author = make_caller(settings, role="user")
    server_id = await insert_server(mongo_client, settings, name="chain", author=author.id)
    stamp = (await client.get(f"{SERVERS}/{server_id}", headers=author.headers)).json()["updatedAt"]

    for index in range(3):
        response = await client.patch(
            f"{SERVERS}/{server_id}",
            json={"description": f"step {index}", "updatedAt": stamp},
            headers=author.headers,
        )
        assert response.status_code == 200
        assert response.json()["updatedAt"] > stamp
        stamp = response.json()["updatedAt"]


async def test_concurrent_writes_without_updated_at_all_apply(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    """Sixteen PATCHes without updatedAt plus sixteen toggles on one server answered some 409s:
    each write retried on a fresh read, and the losers of one round collided again."""
    admin = make_caller(settings, role="admin")
    server_id = await insert_server(
        mongo_client, settings, name="busy", author=admin.id, updated_at=STAMP
    )

    patches = (
        client.patch(
            f"{SERVERS}/{server_id}", json={"description": f"writer {i}"}, headers=admin.headers
        )
        for i in range(16)
    )
    toggles = (
        client.post(
            f"{SERVERS}/{server_id}/toggle", json={"enabled": i % 2 == 0}, headers=admin.headers
        )
        for i in range(16)
    )
    responses = await asyncio.gather(*patches, *toggles)

    assert Counter(response.status_code for response in responses) == {200: 32}
    # A PATCH answers with the document its own write produced (a toggle re-reads it later).
    stamps = {response.json()["updatedAt"] for response in responses[:16]}
    assert len(stamps) == 16, "every write gets its own, later updatedAt"
    document = await stored(mongo_client, settings, server_id)
    assert document["config"]["description"].startswith("writer ")


async def test_update_server_unrepresentable_updated_at_is_422(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    """An updatedAt outside UTC's range (year 1 with a positive offset) answered 500."""
    author = make_caller(settings, role="user")
    server_id = await insert_server(
        mongo_client, settings, name="edges", author=author.id, updated_at=STAMP
    )

    for value in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        response = await client.patch(
            f"{SERVERS}/{server_id}",
            json={"title": "Never", "updatedAt": value},
            headers=author.headers,
        )
        assert response.status_code == 422, value
        assert response.json()["error"] == "validation_error"
    naive = await client.patch(
        f"{SERVERS}/{server_id}",
        json={"title": "Naive", "updatedAt": "0001-01-01T00:00:00"},
        headers=author.headers,
    )
    assert naive.status_code == 409  # a valid instant, read as UTC, just not the stored one
    assert naive.json()["provided_updated_at"] == "0001-01-01T00:00:00Z"
    assert (await stored(mongo_client, settings, server_id))["config"]["title"] == "Raw Server"


async def test_conflict_body_keeps_milliseconds(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    author = make_caller(settings, role="user")
    stamp = datetime(2026, 1, 4, 16, 5, 17, 936000, tzinfo=UTC)
    server_id = await insert_server(
        mongo_client, settings, name="fraction", author=author.id, updated_at=stamp
    )

    response = await client.patch(
        f"{SERVERS}/{server_id}",
        json={"title": "Late", "updatedAt": "2026-01-03T15:45:00.250Z"},
        headers=author.headers,
    )

    assert response.status_code == 409
    assert response.json()["current_updated_at"] == "2026-01-04T16:05:17.936Z"
    assert response.json()["provided_updated_at"] == "2026-01-03T15:45:00.250Z"
