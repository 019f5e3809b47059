"""A server's background sync schedule: read it, and set the server's own sync interval.

The schedule document (``sync_schedules``) belongs to the sync worker
(``registry.services.sync_worker``); this module only sets ``intervalSeconds`` and, when the
server is not backing off, moves ``nextDueAt`` to one new interval after the last run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ReturnDocument

from packages.models.tools import SyncSchedule
from registry.auth import UserContext
from registry.auth.acl import Action
from registry.services.audit import record_audit
from registry.services.server_documents import utcnow
from registry.services.server_store import load, object_id

log = structlog.get_logger("registry.sync_schedules")

ENTITY = "sync_schedule"
MIN_INTERVAL_SECONDS = 30.0
MAX_INTERVAL_SECONDS = 7 * 24 * 3600.0


@dataclass(frozen=True, kw_only=True)
class ScheduleView:
    """A server's schedule as the API shows it (None fields: never scheduled or run yet)."""

    server_id: str
    interval_seconds: float | None
    """The server's own interval; None means the global ``REGISTRY_SYNC_INTERVAL_SECONDS``."""
    effective_interval_seconds: float
    next_due_at: datetime | None
    consecutive_failures: int
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_outcome: str | None
    last_error: str | None


def _view(server_id: ObjectId, schedule: dict[str, Any] | None, default: float) -> ScheduleView:
    schedule = schedule or {}
    own = schedule.get("intervalSeconds")
    return ScheduleView(
        server_id=str(server_id),
        interval_seconds=own,
        effective_interval_seconds=own or default,
        next_due_at=schedule.get("nextDueAt"),
        consecutive_failures=int(schedule.get("consecutiveFailures", 0)),
        last_started_at=schedule.get("lastStartedAt"),
        last_finished_at=schedule.get("lastFinishedAt"),
        last_outcome=schedule.get("lastOutcome"),
        last_error=schedule.get("lastError"),
    )


async def get_schedule(
    *, user: UserContext, server_id: str, default_interval_seconds: float
) -> ScheduleView:
    """The sync schedule of a server the caller can see (NotFoundError otherwise)."""
    oid = (await load(user, object_id(server_id), Action.READ))["_id"]
    schedule = await SyncSchedule.get_pymongo_collection().find_one({"serverId": oid})
    return _view(oid, schedule, default_interval_seconds)


async def set_interval(
    *,
    user: UserContext,
    server_id: str,
    interval_seconds: float | None,
    default_interval_seconds: float,
) -> ScheduleView:
    """Give a server its own sync interval (None: back to the global one).

    Allowed to whoever may sync the server now (admins; the author of a private server).
    Unless the server is backing off after failures, its next sync moves to one new interval
    after its last run (or after now, if it never ran); a due time already in the past means
    the worker syncs it at its next tick.
    """
    oid: ObjectId = (await load(user, object_id(server_id), Action.REFRESH))["_id"]
    schedules = SyncSchedule.get_pymongo_collection()
    before = await schedules.find_one({"serverId": oid})
    now = utcnow()
    interval = interval_seconds or default_interval_seconds
    after_run = (before or {}).get("lastFinishedAt") or now
    update: dict[str, Any] = {
        "$setOnInsert": {"consecutiveFailures": 0},
        "$set": {},
    }
    if interval_seconds is None:
        update["$unset"] = {"intervalSeconds": ""}
    else:
        update["$set"]["intervalSeconds"] = interval_seconds
    if before is None or not before.get("consecutiveFailures"):
        update["$set"]["nextDueAt"] = after_run + timedelta(seconds=interval)
    else:
        update["$setOnInsert"]["nextDueAt"] = now + timedelta(seconds=interval)
    if not update["$set"]:
        del update["$set"]
    after = await schedules.find_one_and_update(
        {"serverId": oid}, update, upsert=True, return_document=ReturnDocument.AFTER
    )
    await record_audit(
        action="update",
        entity_type=ENTITY,
        entity_id=str(oid),
        actor=user,
        before={"intervalSeconds": (before or {}).get("intervalSeconds")},
        after={"intervalSeconds": interval_seconds},
    )
    log.info(
        "sync_interval_set",
        server_id=str(oid),
        interval_seconds=interval_seconds,
        effective_interval_seconds=interval,
    )
    return _view(oid, after, default_interval_seconds)
