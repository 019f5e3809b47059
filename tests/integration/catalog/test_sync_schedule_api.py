"""``/api/v1/sync/servers/{id}/schedule``: a server's own background sync interval."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from packages.models import MCPServer
from packages.models.audit import AuditLog
from packages.models.tools import SyncRun, SyncSchedule, SyncTrigger
from registry.config import Settings
from registry.services.sync_worker import SyncWorker
from tests.factories import make_caller
from tests.integration.catalog.helpers import insert_server
from tests.support import wait_until


def schedule_url(server_id: object) -> str:
    return f"/api/v1/sync/servers/{server_id}/schedule"


async def test_set_interval_stores_override_and_moves_next_due(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    admin = make_caller(settings, role="admin")
    server = await insert_server(name="alpha")
    finished = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=100)
    await SyncSchedule.get_pymongo_collection().insert_one(
        {
            "serverId": server.id,
            "nextDueAt": finished + timedelta(seconds=settings.sync_interval_seconds),
            "lastFinishedAt": finished,
            "lastOutcome": "success",
            "consecutiveFailures": 0,
        }
    )

    before = await client.get(schedule_url(server.id), headers=admin.headers)
    updated = await client.put(
        schedule_url(server.id), json={"intervalSeconds": 3600}, headers=admin.headers
    )
    reset = await client.put(
        schedule_url(server.id), json={"intervalSeconds": None}, headers=admin.headers
    )

    assert before.status_code == 200, before.text
    assert before.json()["intervalSeconds"] is None
    assert before.json()["effectiveIntervalSeconds"] == settings.sync_interval_seconds
    assert before.json()["lastOutcome"] == "success"
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert (body["intervalSeconds"], body["effectiveIntervalSeconds"]) == (3600, 3600)
    due = datetime.fromisoformat(body["nextDueAt"].replace("Z", "+00:00"))
    assert abs((due.replace(tzinfo=UTC) - (finished + timedelta(seconds=3600))).total_seconds()) < 1
    assert reset.json()["intervalSeconds"] is None
    stored = await SyncSchedule.get_pymongo_collection().find_one({"serverId": server.id})
    assert stored is not None and "intervalSeconds" not in stored
    audits = await AuditLog.find({"entity_type": "sync_schedule"}).to_list()
    assert [entry.changes["after"] for entry in audits if entry.changes] == [
        {"intervalSeconds": 3600},
        {"intervalSeconds": None},
    ]


async def test_set_interval_for_unscheduled_server_creates_schedule(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    admin = make_caller(settings, role="admin")
    server = await insert_server(name="fresh")

    response = await client.put(
        schedule_url(server.id), json={"interval_seconds": 60}, headers=admin.headers
    )

    assert response.status_code == 200, response.text
    schedule = await SyncSchedule.find_one({"serverId": server.id})
    assert schedule is not None
    assert schedule.interval_seconds == 60
    delay = (schedule.next_due_at.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
    assert 50 <= delay <= 61


async def test_set_interval_keeps_backoff_due_time(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    admin = make_caller(settings, role="admin")
    server = await insert_server(name="flaky")
    backoff_due = datetime(2031, 1, 1, tzinfo=UTC)
    await SyncSchedule.get_pymongo_collection().insert_one(
        {"serverId": server.id, "nextDueAt": backoff_due, "consecutiveFailures": 2}
    )

    response = await client.put(
        schedule_url(server.id), json={"intervalSeconds": 120}, headers=admin.headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["consecutiveFailures"] == 2
    schedule = await SyncSchedule.find_one({"serverId": server.id})
    assert schedule is not None and schedule.next_due_at.replace(tzinfo=UTC) == backoff_due


@pytest.mark.parametrize(
    "body",
    [
        {"intervalSeconds": 5},
        {"intervalSeconds": 10**9},
        {"intervalSeconds": "often"},
        {},
        {"intervalSeconds": 60, "extra": 1},
    ],
)
async def test_set_interval_rejects_bad_bodies(
    app: FastAPI, client: AsyncClient, settings: Settings, body: dict[str, object]
) -> None:
    admin = make_caller(settings, role="admin")
    server = await insert_server(name="alpha")

    response = await client.put(schedule_url(server.id), json=body, headers=admin.headers)

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert await SyncSchedule.find_one({"serverId": server.id}) is None


async def test_schedule_access_follows_the_server_acl(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    user = make_caller(settings)
    other = make_caller(settings)
    shared = await insert_server(name="shared")
    private = await insert_server(name="mine", scope="private_user", author=user.id)
    body = {"intervalSeconds": 600}

    read_shared = await client.get(schedule_url(shared.id), headers=user.headers)
    set_shared = await client.put(schedule_url(shared.id), json=body, headers=user.headers)
    set_own = await client.put(schedule_url(private.id), json=body, headers=user.headers)
    read_other = await client.get(schedule_url(private.id), headers=other.headers)
    set_other = await client.put(schedule_url(private.id), json=body, headers=other.headers)
    malformed = await client.get(schedule_url("not-an-id"), headers=user.headers)
    anonymous = await client.get(schedule_url(shared.id))

    assert read_shared.status_code == 200
    assert set_shared.status_code == 403
    assert set_own.status_code == 200
    assert (read_other.status_code, set_other.status_code) == (404, 404)
    assert malformed.status_code == 404
    assert anonymous.status_code == 401


async def test_worker_keeps_an_overridden_schedule_of_a_switched_off_server(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    """Switching a server off drops its schedule, unless it has its own interval."""
    admin = make_caller(settings, role="admin")
    kept = await insert_server(name="kept")
    dropped = await insert_server(name="dropped")
    calls: list[str] = []

    async def sync(server: MCPServer, trigger: SyncTrigger) -> SyncRun:  # both are off
        calls.append(trigger)
        raise AssertionError("an inactive server was synced")

    worker = SyncWorker(settings=settings, sync=sync, rng=random.Random(3))
    url = schedule_url(kept.id)
    try:
        await worker.tick()
        await client.put(url, json={"intervalSeconds": 900}, headers=admin.headers)
        await kept.get_pymongo_collection().update_many({}, {"$set": {"status": "inactive"}})
        await worker.tick()
        # When it falls due, the run finds the server off and reschedules it, untouched.
        await SyncSchedule.get_pymongo_collection().update_one(
            {"serverId": kept.id}, {"$set": {"nextDueAt": datetime.now(UTC)}}
        )
        await worker.tick()

        async def looked_at() -> bool:
            found = await SyncSchedule.find_one({"serverId": kept.id})
            return found is not None and found.last_finished_at is not None

        await wait_until(looked_at)
    finally:
        await worker.stop()

    assert calls == []
    assert await SyncSchedule.find_one({"serverId": dropped.id}) is None
    schedule = await SyncSchedule.find_one({"serverId": kept.id})
    assert schedule is not None and schedule.interval_seconds == 900
    delay = (schedule.next_due_at.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
    assert 800 <= delay <= 900
