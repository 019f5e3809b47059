"""The background sync worker: schedules, backoff, error state, recovery, concurrency."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from fastapi import FastAPI
from httpx import AsyncClient

from packages.models import MCPServer
from packages.models.audit import AuditLog
from packages.models.tools import SyncRun, SyncSchedule, SyncTrigger
from registry.config import Settings
from registry.services.catalog_sync import record_failed_sync, sync_server_tools
from registry.services.sync_worker import SyncWorker
from tests.factories import make_caller
from tests.integration.catalog.helpers import insert_server, raw_server, server_document, tool
from tests.support import wait_until

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ScriptedSync:
    """A sync function that fails while ``failing`` and records every call."""

    def __init__(self) -> None:
        self.failing = True
        self.calls: list[tuple[ObjectId, SyncTrigger]] = []
        self.release: asyncio.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, server: MCPServer, trigger: SyncTrigger) -> SyncRun:
        assert server.id is not None
        self.calls.append((server.id, trigger))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.release is not None:
                await self.release.wait()
            return await self._finish(server, trigger)
        finally:
            self.in_flight -= 1

    async def _finish(self, server: MCPServer, trigger: SyncTrigger) -> SyncRun:
        if self.failing:
            return await record_failed_sync(
                server=server, trigger=trigger, actor_id="sync", error="Upstream is down"
            )
        result = await sync_server_tools(server=server, discovered=[tool("a")], trigger=trigger)
        return result.run


WorkerFactory = Callable[[Settings, ScriptedSync, FakeClock], SyncWorker]


@pytest.fixture
async def make_worker() -> AsyncIterator[WorkerFactory]:
    """Build workers with a seeded RNG; all are stopped before the database goes away."""
    workers: list[SyncWorker] = []

    def build(settings: Settings, sync: ScriptedSync, clock: FakeClock) -> SyncWorker:
        worker = SyncWorker(
            settings=settings,
            sync=sync,
            clock=clock,
            rng=random.Random(7),
            backoff_base_seconds=10,
        )
        workers.append(worker)
        return worker

    yield build
    for worker in workers:
        await worker.stop()


async def schedule_of(server_id: Any) -> SyncSchedule:
    found = await SyncSchedule.find_one({"serverId": server_id})
    assert found is not None
    return found


async def make_due(server_id: Any, clock: FakeClock) -> None:
    await SyncSchedule.get_pymongo_collection().update_one(
        {"serverId": server_id}, {"$set": {"nextDueAt": clock.now}}
    )


async def test_tick_creates_schedules_spread_over_the_interval(
    app: FastAPI, settings: Settings, make_worker: WorkerFactory
) -> None:
    clock = FakeClock()
    sync = ScriptedSync()
    worker = make_worker(settings, sync, clock)
    servers = [await insert_server(name=f"s{i}") for i in range(3)]
    disabled = await insert_server(name="off", status="inactive")

    started = await worker.tick()

    assert started == 0
    assert sync.calls == []
    for server in servers:
        schedule = await schedule_of(server.id)
        delay = (schedule.next_due_at - T0).total_seconds()
        assert 150 <= delay <= 300
        assert schedule.consecutive_failures == 0
    assert await SyncSchedule.find_one({"serverId": disabled.id}) is None


async def test_failing_sync_backs_off_marks_error_and_recovers(
    app: FastAPI, settings: Settings, make_worker: WorkerFactory
) -> None:
    clock = FakeClock()
    sync = ScriptedSync()
    worker = make_worker(settings, sync, clock)
    server = await insert_server(name="flaky")
    await worker.tick()
    delays: list[float] = []
    updated_at = (await raw_server(server))["updatedAt"]

    for attempt in range(1, 4):
        await make_due(server.id, clock)
        assert await worker.tick() == 1
        await worker.drain()
        schedule = await schedule_of(server.id)
        assert schedule.consecutive_failures == attempt
        assert schedule.last_outcome == "error"
        assert schedule.last_error == "Upstream is down"
        assert schedule.lease_until is None
        delays.append((schedule.next_due_at - clock.now).total_seconds())
        expected_cap = 10 * 2 ** (attempt - 1)
        assert expected_cap / 2 <= delays[-1] <= expected_cap
        status = (await raw_server(server))["status"]
        assert status == ("error" if attempt >= 3 else "active")
        clock.advance(1)

    document = await raw_server(server)
    assert document["errorMessage"] == "Upstream is down"
    assert delays[0] < delays[1] < delays[2]

    sync.failing = False
    await make_due(server.id, clock)
    assert await worker.tick() == 1
    await worker.drain()

    schedule = await schedule_of(server.id)
    assert schedule.consecutive_failures == 0
    assert schedule.last_outcome == "success"
    assert (schedule.next_due_at - clock.now).total_seconds() == settings.sync_interval_seconds
    document = await raw_server(server)
    assert document["status"] == "active"
    assert "errorMessage" not in document
    assert document["config"]["tools"] == "a"
    assert [trigger for _, trigger in sync.calls] == ["scheduled"] * 4
    # Background health changes are audited but leave updatedAt (the edit version) alone.
    assert document["updatedAt"] == updated_at
    audit = await AuditLog.find({"entity_id": server.id}).sort("timestamp").to_list()
    assert [(entry.action, entry.user_id) for entry in audit] == [
        ("sync_error", "sync"),
        ("sync", "sync"),
        ("sync_recovered", "sync"),
    ]
    assert audit[0].changes["after"] == {"status": "error", "errorMessage": "Upstream is down"}
    assert audit[1].changes["after"]["added"] == ["a"]
    assert audit[1].changes["after"]["trigger"] == "scheduled"


async def test_success_older_than_the_error_does_not_recover(
    app: FastAPI, settings: Settings, make_worker: WorkerFactory
) -> None:
    """A sync that reached the upstream just before it died finished after the gateway's
    failed calls had marked the server ``error`` and put it back to ``active``."""
    clock = FakeClock()
    sync = ScriptedSync()
    sync.failing = False
    sync.release = asyncio.Event()
    worker = make_worker(settings, sync, clock)
    server = await insert_server(name="dying")
    await worker.tick()
    await make_due(server.id, clock)
    assert await worker.tick() == 1
    await wait_until(lambda: sync.in_flight == 1)
    # Meanwhile the gateway's calls fail and it records the error, after the sync started.
    await MCPServer.get_pymongo_collection().update_one(
        {"_id": server.id},
        {
            "$set": {
                "status": "error",
                "lastError": datetime.now(UTC),
                "errorMessage": "Could not connect",
            }
        },
    )

    sync.release.set()
    await worker.drain()

    document = await raw_server(server)
    assert (document["status"], document["errorMessage"]) == ("error", "Could not connect")
    assert (await schedule_of(server.id)).last_outcome == "success"
    assert await AuditLog.find({"action": "sync_recovered"}).count() == 0


async def test_not_due_server_is_not_synced(
    app: FastAPI, settings: Settings, make_worker: WorkerFactory
) -> None:
    clock = FakeClock()
    sync = ScriptedSync()
    worker = make_worker(settings, sync, clock)
    await insert_server(name="later")
    await worker.tick()
    clock.advance(149)

    assert await worker.tick() == 0
    assert sync.calls == []


async def test_request_sync_runs_promptly_with_trigger(
    app: FastAPI, settings: Settings, make_worker: WorkerFactory
) -> None:
    clock = FakeClock()
    sync = ScriptedSync()
    sync.failing = False
    worker = make_worker(settings, sync, clock)
    server = await insert_server(name="changing")

    assert server.id is not None
    worker.request_sync(server.id, "list_changed")

    await wait_until(lambda: len(sync.calls) == 1)
    await worker.drain()
    assert sync.calls == [(server.id, "list_changed")]
    schedule = await schedule_of(server.id)
    assert schedule.last_outcome == "success"
    assert "pendingTrigger" not in (
        await SyncSchedule.get_pymongo_collection().find_one({"serverId": server.id}) or {}
    )


async def test_finished_syncs_claim_without_rescanning_every_server(
    app: FastAPI, settings: Settings, make_worker: WorkerFactory
) -> None:
    """Each finished sync woke the loop into a full reconcile (every server id, every
    schedule id): with 1,000 dead servers syncing, API latency rose 3-8x."""
    clock = FakeClock()
    sync = ScriptedSync()
    sync.failing = False
    worker = make_worker(settings.model_copy(update={"sync_tick_seconds": 3600}), sync, clock)
    first = [await insert_server(name=f"due{i}") for i in range(3)]
    await worker.tick()
    for server in first:
        await make_due(server.id, clock)
    worker.start()
    await wait_until(lambda: len(sync.calls) == 3)
    late = await insert_server(name="late")  # registered while the loop runs

    assert late.id is not None
    worker.request_sync(late.id, "list_changed")  # a wake-up that is not the timer
    await wait_until(lambda: len(sync.calls) == 4)
    await worker.drain()

    scheduled = await SyncSchedule.find({}).to_list()
    assert {schedule.server_id for schedule in scheduled} == {s.id for s in (*first, late)}
    other = await insert_server(name="unseen")
    worker.request_sync(late.id, "list_changed")
    await wait_until(lambda: len(sync.calls) == 5)
    await worker.drain()
    # No timer tick has passed: the woken loop only claimed due servers.
    assert await SyncSchedule.find_one({"serverId": other.id}) is None


async def test_tick_bounds_concurrency(
    app: FastAPI, settings: Settings, make_worker: WorkerFactory
) -> None:
    clock = FakeClock()
    sync = ScriptedSync()
    sync.release = asyncio.Event()
    worker = make_worker(settings, sync, clock)
    for i in range(20):
        await insert_server(name=f"s{i}")
    await worker.tick()
    await SyncSchedule.get_pymongo_collection().update_many({}, {"$set": {"nextDueAt": T0}})

    first = await worker.tick()
    second = await worker.tick()

    assert (first, second) == (settings.sync_concurrency, 0)
    assert worker.active_syncs == settings.sync_concurrency
    sync.release.set()
    await worker.drain()
    sync.release = asyncio.Event()
    assert await worker.tick() == settings.sync_concurrency
    sync.release.set()
    await worker.drain()
    assert await worker.tick() == 20 - 2 * settings.sync_concurrency
    await worker.drain()
    assert len({server_id for server_id, _ in sync.calls}) == 20
    assert sync.max_in_flight == settings.sync_concurrency


async def test_thousand_servers_do_not_block_the_api(
    app: FastAPI, client: AsyncClient, settings: Settings, make_worker: WorkerFactory
) -> None:
    """A tick over 1,000 due servers is a few queries; the API keeps answering meanwhile."""
    clock = FakeClock()
    sync = ScriptedSync()
    sync.release = asyncio.Event()
    worker = make_worker(settings, sync, clock)
    documents = [server_document(name=f"bulk{i}") for i in range(1000)]
    await MCPServer.get_pymongo_collection().insert_many(documents)
    admin = make_caller(settings, role="admin")

    started = time.monotonic()
    await asyncio.wait_for(worker.tick(), timeout=10)
    await SyncSchedule.get_pymongo_collection().update_many({}, {"$set": {"nextDueAt": T0}})
    await asyncio.wait_for(worker.tick(), timeout=10)
    assert time.monotonic() - started < 10
    assert await SyncSchedule.find_all().count() == 1000
    assert worker.active_syncs == settings.sync_concurrency

    for _ in range(5):
        response = await asyncio.wait_for(
            client.get("/api/v1/tools", headers=admin.headers), timeout=2
        )
        assert response.status_code == 200
    sync.release.set()
    await worker.drain()
