"""The background sync worker: periodic per-server catalog sync inside the service.

Scheduling state lives in ``sync_schedules`` (one document per server: ``nextDueAt``,
``consecutiveFailures``, a lease), so a tick is a handful of indexed queries whatever the
number of servers, and several replicas never sync the same server at once (the lease is
claimed with one conditional ``find_one_and_update``). Syncs run as background tasks, at most
``REGISTRY_SYNC_CONCURRENCY`` at a time; the API never waits for them.

- Interval: ``REGISTRY_SYNC_INTERVAL_SECONDS``, or the schedule's ``intervalSeconds`` (set
  through ``registry.services.sync_schedules``; kept while the server is switched off).
  New schedules are spread over half to one interval, so a restart does not sync every
  server at once (and registration has just discovered a new server anyway).
- Failure: exponential backoff with jitter (``base * 2^(n-1)``, capped at
  ``REGISTRY_SYNC_BACKOFF_MAX_SECONDS``, then 50-100 % of it); after
  ``REGISTRY_SYNC_FAILURE_THRESHOLD`` consecutive failures the server's ``status`` becomes
  ``error``. The next success resets the count and puts an ``error`` server back to ``active``.
- ``request_sync(server_id, trigger)``: a prompt sync (``notifications/tools/list_changed``),
  ahead of every due server. With the periodic loop disabled it still runs, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from packages.models import MCPServer
from packages.models.tools import SyncRun, SyncSchedule, SyncTrigger
from registry.config import Settings
from registry.runtime import Runtime
from registry.services.audit import record_audit
from registry.services.catalog_runs import run_sync
from registry.services.catalog_sync import SYNC_ACTOR
from registry.services.discovery import CredentialUnavailableError
from registry.services.server_documents import to_bson_time, utcnow

log = structlog.get_logger("registry.sync_worker")

SyncFunction = Callable[[MCPServer, SyncTrigger], Awaitable[SyncRun]]
Clock = Callable[[], datetime]

_PRIORITY_DUE = datetime(1970, 1, 1, tzinfo=UTC)
_SYNCED_STATUSES = ("active", "error", None)


def _now() -> datetime:
    return to_bson_time(datetime.now(UTC))


class SyncWorker:
    """Periodic and on-demand catalog syncs with bounded concurrency and backoff."""

    def __init__(
        self,
        *,
        settings: Settings,
        sync: SyncFunction | None = None,
        clock: Clock = _now,
        rng: random.Random | None = None,
        backoff_base_seconds: float = 30.0,
        lease_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        self.interval = settings.sync_interval_seconds
        self.concurrency = settings.sync_concurrency
        self.failure_threshold = settings.sync_failure_threshold
        self.backoff_max = settings.sync_backoff_max_seconds
        self.backoff_base = backoff_base_seconds
        self.lease = timedelta(
            seconds=lease_seconds or max(60.0, 4 * settings.discovery_timeout_seconds)
        )
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._sync = sync or self._default_sync
        self._semaphore = asyncio.Semaphore(self.concurrency)
        self._tasks: dict[ObjectId, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def _default_sync(self, server: MCPServer, trigger: SyncTrigger) -> SyncRun:
        return await run_sync(
            server=server,
            settings=self.settings,
            trigger=trigger,
            record_credential_failures=False,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def active_syncs(self) -> int:
        return len(self._tasks)

    def start(self) -> None:
        """Start the periodic loop (idempotent)."""
        if not self.is_running:
            self._loop_task = asyncio.create_task(self._loop(), name="catalog-sync-worker")

    async def stop(self) -> None:
        """Stop the loop and cancel running syncs (their leases expire on their own)."""
        tasks = [task for task in (self._loop_task, *self._tasks.values()) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loop_task = None
        self._tasks.clear()

    async def drain(self) -> None:
        """Wait until no sync is running (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def _loop(self) -> None:
        log.info("sync_worker_started", interval=self.interval, concurrency=self.concurrency)
        loop = asyncio.get_running_loop()
        reconcile_due = 0.0
        while True:
            # Every finished sync wakes the loop to claim the next due server; reading every
            # server and schedule id each time made a busy worker (1,000 dead servers, ~10
            # runs/s) slow the API 3-8x. Schedules are reconciled once per tick interval.
            reconcile = loop.time() >= reconcile_due
            if reconcile:
                reconcile_due = loop.time() + self.settings.sync_tick_seconds
            try:
                await self.tick(reconcile=reconcile)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # task boundary: log once, keep the worker alive
                log.error("sync_worker_tick_failed", error_type=type(exc).__name__, exc_info=exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.sync_tick_seconds)

    # -- scheduling --------------------------------------------------------------------------

    def request_sync(
        self, server_id: ObjectId | str, trigger: SyncTrigger = "list_changed"
    ) -> None:
        """Sync ``server_id`` promptly (ahead of due servers); returns at once."""
        oid = server_id if isinstance(server_id, ObjectId) else ObjectId(str(server_id))
        task = asyncio.create_task(self._request(oid, trigger), name=f"sync-request-{oid}")
        task.add_done_callback(_log_task_error)

    async def _request(self, server_id: ObjectId, trigger: SyncTrigger) -> None:
        await SyncSchedule.get_pymongo_collection().update_one(
            {"serverId": server_id},
            {
                "$set": {"nextDueAt": _PRIORITY_DUE, "pendingTrigger": trigger},
                "$setOnInsert": {"consecutiveFailures": 0},
            },
            upsert=True,
        )
        if self.is_running:
            self._wake.set()
        else:
            await self._claim_and_start(self.clock(), only=server_id)

    async def tick(self, *, reconcile: bool = True) -> int:
        """Create missing schedules (with ``reconcile``), then start due syncs up to the
        concurrency bound.

        Returns the number of syncs started. Never waits for a sync to finish.
        """
        now = self.clock()
        if reconcile:
            await self._reconcile(now)
        started = 0
        while len(self._tasks) < self.concurrency:
            if not await self._claim_and_start(now):
                break
            started += 1
        return started

    async def _reconcile(self, now: datetime) -> None:
        servers = MCPServer.get_pymongo_collection()
        schedules = SyncSchedule.get_pymongo_collection()
        server_ids = {
            document["_id"]
            async for document in servers.find(
                {"status": {"$in": list(_SYNCED_STATUSES)}}, projection={"_id": 1}
            )
        }
        scheduled = {
            document["serverId"]
            async for document in schedules.find({}, projection={"serverId": 1, "_id": 0})
        }
        missing = server_ids - scheduled
        if missing:
            documents = [
                {
                    "serverId": server_id,
                    "nextDueAt": now + timedelta(seconds=self.interval * self.rng.uniform(0.5, 1)),
                    "consecutiveFailures": 0,
                }
                for server_id in missing
            ]
            with contextlib.suppress(DuplicateKeyError):
                await schedules.insert_many(documents, ordered=False)
        gone = scheduled - server_ids
        if gone:
            # A schedule with its own interval outlives a switch-off (the interval was set
            # through the API); the run finds the server inactive and just reschedules.
            await schedules.delete_many(
                {
                    "serverId": {"$in": list(gone)},
                    "leaseUntil": {"$not": {"$gt": now}},
                    "intervalSeconds": None,
                }
            )

    async def _claim_and_start(self, now: datetime, *, only: ObjectId | None = None) -> bool:
        query: dict[str, Any] = {
            "nextDueAt": {"$lte": now},
            "leaseUntil": {"$not": {"$gt": now}},
            "serverId": {"$nin": list(self._tasks)},
        }
        if only is not None:
            if only in self._tasks:
                return False
            query["serverId"] = only
        claimed = await SyncSchedule.get_pymongo_collection().find_one_and_update(
            query,
            {
                "$set": {"leaseUntil": now + self.lease, "lastStartedAt": now},
                "$unset": {"pendingTrigger": ""},
            },
            sort=[("nextDueAt", 1)],
            return_document=ReturnDocument.BEFORE,
        )
        if claimed is None:
            return False
        trigger: SyncTrigger = claimed.get("pendingTrigger") or "scheduled"
        server_id = claimed["serverId"]
        task = asyncio.create_task(self._run_one(claimed, trigger), name=f"sync-{server_id}")
        self._tasks[server_id] = task
        task.add_done_callback(lambda _: self._finished(server_id))
        return True

    def _finished(self, server_id: ObjectId) -> None:
        self._tasks.pop(server_id, None)
        self._wake.set()

    # -- one sync ----------------------------------------------------------------------------

    async def _run_one(self, schedule: dict[str, Any], trigger: SyncTrigger) -> None:
        try:
            await self._sync_and_record(schedule, trigger)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # task boundary: nobody awaits this task
            log.error("sync_bookkeeping_failed", server_id=str(schedule["serverId"]), exc_info=exc)

    async def _sync_and_record(self, schedule: dict[str, Any], trigger: SyncTrigger) -> None:
        server_id: ObjectId = schedule["serverId"]
        async with self._semaphore:
            error: str | None
            try:
                server = await MCPServer.get(server_id)
                if server is None or server.status == "inactive":
                    await self._retire(schedule, server_exists=server is not None)
                    return
                started = utcnow()
                run = await self._sync(server, trigger)
                error = run.error if run.outcome == "error" else None
            except CredentialUnavailableError:
                log.info("catalog_sync_skipped", server_id=str(server_id), reason="credential")
                await self._reschedule(schedule, failures=0, error=None, outcome=None)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # task boundary: one log line, counted as a failure
                log.error("catalog_sync_crashed", server_id=str(server_id), exc_info=exc)
                error = "Synchronisation failed unexpectedly"
            if error is None:
                await self._reschedule(schedule, failures=0, error=None, outcome="success")
                await self._recover(server_id, sync_started_at=started)
                return
            failures = int(schedule.get("consecutiveFailures", 0)) + 1
            await self._reschedule(schedule, failures=failures, error=error, outcome="error")
            if failures >= self.failure_threshold:
                await self._mark_error(server_id, error)

    def backoff_seconds(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failures (capped, with 50-100 % jitter)."""
        cap: float = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, failures - 1))
        return cap * self.rng.uniform(0.5, 1.0)

    async def _reschedule(
        self, schedule: dict[str, Any], *, failures: int, error: str | None, outcome: str | None
    ) -> None:
        now = self.clock()
        interval = schedule.get("intervalSeconds") or self.interval
        delay = self.backoff_seconds(failures) if failures else interval
        fields: dict[str, Any] = {
            "consecutiveFailures": failures,
            "lastFinishedAt": now,
            "lastError": error,
            "leaseUntil": None,
        }
        if outcome is not None:
            fields["lastOutcome"] = outcome
        schedules = SyncSchedule.get_pymongo_collection()
        # A request that arrived during the run (pendingTrigger) keeps its priority due time.
        result = await schedules.update_one(
            {"serverId": schedule["serverId"], "pendingTrigger": {"$exists": False}},
            {"$set": {**fields, "nextDueAt": now + timedelta(seconds=delay)}},
        )
        if result.matched_count == 0:
            await schedules.update_one({"serverId": schedule["serverId"]}, {"$set": fields})

    async def _retire(self, schedule: dict[str, Any], *, server_exists: bool) -> None:
        """The server is gone or switched off: drop its schedule, unless it is switched off
        and has its own interval, which is kept (and the server looked at again then)."""
        if server_exists and schedule.get("intervalSeconds"):
            await self._reschedule(schedule, failures=0, error=None, outcome=None)
            return
        await SyncSchedule.get_pymongo_collection().delete_one({"serverId": schedule["serverId"]})

    # Status changes by the worker leave updatedAt alone, as the gateway's do: updatedAt
    # versions what people edit, and background health must not turn their PATCH into a 409.

    async def _mark_error(self, server_id: ObjectId, error: str) -> None:
        now = utcnow()
        result = await MCPServer.get_pymongo_collection().update_one(
            {"_id": server_id, "status": {"$in": ["active", None]}},
            {"$set": {"status": "error", "lastError": now, "errorMessage": error}},
        )
        if result.modified_count:
            log.warning("server_sync_errored", server_id=str(server_id), error=error)
            await record_audit(
                action="sync_error",
                entity_type="server",
                entity_id=str(server_id),
                actor=SYNC_ACTOR,
                before={"status": "active"},
                after={"status": "error", "errorMessage": error},
            )

    async def _recover(self, server_id: ObjectId, *, sync_started_at: datetime) -> None:
        """Clear the error state, unless it was recorded after this sync started.

        A sync that listed the tools just before the upstream died can finish after the
        gateway's failed calls marked the server ``error``: its success is older news and must
        not hide the newer failure (the gateway's fault test caught this under load). A later
        success, of a sync or a gateway call, recovers the server.
        """
        now = utcnow()
        result = await MCPServer.get_pymongo_collection().update_one(
            {
                "_id": server_id,
                "status": "error",
                "$or": [{"lastError": None}, {"lastError": {"$lt": sync_started_at}}],
            },
            {"$set": {"status": "active", "lastConnected": now}, "$unset": {"errorMessage": ""}},
        )
        if result.modified_count:
            log.info("server_sync_recovered", server_id=str(server_id))
            await record_audit(
                action="sync_recovered",
                entity_type="server",
                entity_id=str(server_id),
                actor=SYNC_ACTOR,
                before={"status": "error"},
                after={"status": "active"},
            )


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sync_request_failed", exc_info=task.exception())


async def start_sync_worker(runtime: Runtime) -> None:
    """Startup hook: build the worker, publish ``request_sync``, start the loop if enabled."""
    worker = SyncWorker(settings=runtime.settings)
    runtime.extras["sync_worker"] = worker
    runtime.extras["request_sync"] = worker.request_sync
    if runtime.settings.sync_enabled:
        worker.start()


async def stop_sync_worker(runtime: Runtime) -> None:
    """Shutdown hook: stop the worker started by ``start_sync_worker``."""
    worker = runtime.extras.pop("sync_worker", None)
    runtime.extras.pop("request_sync", None)
    if isinstance(worker, SyncWorker):
        await worker.stop()
