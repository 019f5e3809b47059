"""Synchronising the tool catalog with what an upstream lists (design 003 "Synchronization
Workflow"), and keeping the server document's exposed tools in step with the catalog.

``sync_server_tools`` upserts by tool name: new tools get the configured default exposure and
``selected``; a changed ``discoveryHash`` updates the tool, increments its ``version`` and
writes a ``ToolVersion``; tools the upstream no longer lists become ``stale`` (never deleted);
a stale tool that reappears is ``selected`` again. Every write is conditional (the unique
``(serverId, name)`` index plus compare-and-set on ``updatedAt``), so two concurrent syncs of
one server cannot create duplicates or lose an admin's change.

``refresh_server_exposure`` recomputes ``config.tools`` / ``config.toolFunctions`` /
``numTools`` of the ``mcpservers`` document from the exposed tools (active + selected, server
not disabled): the external app reads those fields.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from packages.models import MCPServer
from packages.models.tools import (
    ExposureState,
    SyncCounts,
    SyncRun,
    SyncSchedule,
    SyncTrigger,
    Tool,
    ToolVersion,
)
from registry.errors import RegistryError
from registry.gateway.upstream import DiscoveredTool, tool_function_name
from registry.services import catalog_cache
from registry.services.audit import record_audit
from registry.services.catalog_metadata import discovery_hash, effective_metadata
from registry.services.server_documents import TOOLS_SEPARATOR, next_updated_at, utcnow
from registry.services.tool_invariants import EXPOSED_FILTER, server_exposes_tools

log = structlog.get_logger("registry.catalog")

SYNC_ACTOR = "sync"
_exposure_locks: weakref.WeakValueDictionary[ObjectId, asyncio.Lock] = weakref.WeakValueDictionary()
# As registration writes it (registry.services.discovery): the external app's own documents
# join tool names with "," and readers split on "," and strip.
_CAS_ATTEMPTS = 5


@dataclass
class SyncRunResult:
    """The recorded run plus the names of the server's tools exposed after it."""

    run: SyncRun
    exposed_tools: list[str] = field(default_factory=list)

    @property
    def counts(self) -> SyncCounts:
        return self.run.counts


def tool_snapshot(document: Mapping[str, Any]) -> dict[str, Any]:
    """The versioned part of a stored tool (definition, metadata, states, access)."""
    keys = (
        "name",
        "displayName",
        "title",
        "description",
        "inputSchema",
        "outputSchema",
        "annotations",
        "metadata",
        "metadataSource",
        "adminMetadata",
        "exposureState",
        "registrationState",
        "allowedRoles",
        "allowedGroups",
        "tags",
        "discoveryHash",
    )
    return {key: document.get(key) for key in keys}


async def record_version(
    *, document: Mapping[str, Any], changed_by: str, reason: str, at: datetime
) -> None:
    """Insert the ``ToolVersion`` for the stored tool ``document`` (at its current version)."""
    await ToolVersion(
        tool_id=document["_id"],
        server_id=document["serverId"],
        version=int(document.get("version", 1)),
        snapshot=tool_snapshot(document),
        changed_by=changed_by,
        changed_at=at,
        reason=reason,
    ).insert()


def _definition(tool: DiscoveredTool) -> dict[str, Any]:
    return {
        "title": tool.title,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "outputSchema": tool.output_schema,
        "annotations": tool.annotations,
        "discoveryHash": discovery_hash(
            name=tool.name,
            description=tool.description,
            input_schema=tool.input_schema,
            output_schema=tool.output_schema,
            annotations=tool.annotations,
        ),
    }


def _metadata_fields(tool: DiscoveredTool, admin: Mapping[str, Any]) -> dict[str, Any]:
    resolved = effective_metadata(name=tool.name, annotations=tool.annotations, admin=admin)
    return {"metadata": resolved.metadata.model_dump(), "metadataSource": resolved.sources}


class _ToolSync:
    """One run's writes for one server; counts what happened."""

    def __init__(
        self,
        *,
        server_id: ObjectId,
        server_name: str,
        default_exposure: ExposureState,
        actor_id: str,
        now: datetime,
    ) -> None:
        self.server_id = server_id
        self.server_name = server_name
        self.default_exposure = default_exposure
        self.actor_id = actor_id
        self.now = now
        self.counts = SyncCounts()
        self.unchanged: list[str] = []
        # Tool names per kind of change, for the run's audit entry.
        self.changed: dict[str, list[str]] = {
            "added": [],
            "updated": [],
            "reactivated": [],
            "stale": [],
        }
        self.collection = Tool.get_pymongo_collection()

    async def apply(self, tool: DiscoveredTool, existing: Mapping[str, Any] | None) -> None:
        if existing is None:
            if await self._insert(tool):
                return
            existing = await self.collection.find_one(
                {"serverId": self.server_id, "name": tool.name}
            )
            if existing is None:  # inserted and deleted in between: nothing sensible to do
                return

        async def update(current: Mapping[str, Any]) -> bool:
            return await self._update(tool, current) is not None

        await self._until_applied(existing, update, still_due={})

    async def _until_applied(
        self,
        existing: Mapping[str, Any],
        attempt: Callable[[Mapping[str, Any]], Awaitable[bool]],
        *,
        still_due: Mapping[str, Any],
    ) -> bool:
        """Run ``attempt`` (a compare-and-set on the tool's ``updatedAt``) until it applies,
        re-reading the tool after each lost race; False once the tool no longer matches
        ``still_due`` (or is gone). Raises RegistryError when it keeps losing."""
        for _ in range(_CAS_ATTEMPTS):
            if await attempt(existing):
                return True
            reloaded = await self.collection.find_one({**still_due, "_id": existing["_id"]})
            if reloaded is None:
                return False
            existing = reloaded
        raise RegistryError(f"Tool {existing['name']!r} kept changing during synchronisation")

    async def _insert(self, tool: DiscoveredTool) -> bool:
        definition = _definition(tool)
        document: dict[str, Any] = {
            "serverId": self.server_id,
            "serverName": self.server_name,
            "name": tool.name,
            **definition,
            **_metadata_fields(tool, {}),
            "adminMetadata": {},
            "exposureState": self.default_exposure,
            "registrationState": "selected",
            "allowedRoles": [],
            "allowedGroups": [],
            "tags": [],
            "lastDiscoveredAt": self.now,
            "lastSyncedAt": self.now,
            "syncError": None,
            "version": 1,
            "createdAt": self.now,
            "updatedAt": self.now,
        }
        try:
            result = await self.collection.update_one(
                {"serverId": self.server_id, "name": tool.name},
                {"$setOnInsert": document},
                upsert=True,
            )
        except DuplicateKeyError:
            # A concurrent sync inserted it between our upsert's match and its insert.
            return False
        if result.upserted_id is None:
            return False
        document["_id"] = result.upserted_id
        await record_version(
            document=document, changed_by=self.actor_id, reason="discovered", at=self.now
        )
        self.counts.added += 1
        self.changed["added"].append(tool.name)
        return True

    async def _update(self, tool: DiscoveredTool, existing: Mapping[str, Any]) -> str | None:
        """Apply the upstream definition to ``existing``; None when it changed meanwhile."""
        definition = _definition(tool)
        changed = definition["discoveryHash"] != existing.get("discoveryHash")
        reappeared = existing.get("registrationState") == "stale"
        if not changed and not reappeared:
            self.unchanged.append(tool.name)
            return "unchanged"
        to_set: dict[str, Any] = {
            "lastDiscoveredAt": self.now,
            "lastSyncedAt": self.now,
            "syncError": None,
            "updatedAt": next_updated_at(existing.get("updatedAt")),
        }
        # Both are changes of the tool: a new version, in the history.
        update: dict[str, Any] = {"$set": to_set, "$inc": {"version": 1}}
        if changed:
            to_set.update(definition)
            to_set.update(_metadata_fields(tool, existing.get("adminMetadata") or {}))
        if reappeared:
            to_set["registrationState"] = "selected"
        stored = await self.collection.find_one_and_update(
            {"_id": existing["_id"], "updatedAt": existing.get("updatedAt")},
            update,
            return_document=ReturnDocument.AFTER,
        )
        if stored is None:
            return None
        reason = "upstream_changed" if changed else "reappeared"
        if changed and reappeared:
            reason = "upstream_changed_and_reappeared"
        await record_version(document=stored, changed_by=self.actor_id, reason=reason, at=self.now)
        if reappeared:
            self.counts.reactivated += 1
            self.changed["reactivated"].append(tool.name)
        else:
            self.counts.updated += 1
            self.changed["updated"].append(tool.name)
        return "applied"

    async def _mark_stale(self, existing: Mapping[str, Any], gone: Mapping[str, Any]) -> bool:
        """Mark one vanished tool ``stale`` as a versioned change; False if no longer due.

        A compare-and-set on ``updatedAt``, like every tool change: a client holding the
        tool's earlier ``updatedAt`` gets 409 afterwards, and the history shows the change.
        """

        async def mark(current: Mapping[str, Any]) -> bool:
            stored = await self.collection.find_one_and_update(
                {**gone, "_id": current["_id"], "updatedAt": current.get("updatedAt")},
                {
                    "$set": {
                        "registrationState": "stale",
                        "lastSyncedAt": self.now,
                        "updatedAt": next_updated_at(current.get("updatedAt")),
                    },
                    "$inc": {"version": 1},
                },
                return_document=ReturnDocument.AFTER,
            )
            if stored is None:
                return False
            await record_version(
                document=stored, changed_by=self.actor_id, reason="stale", at=self.now
            )
            return True

        # Not due any more when deleted, already stale or listed again meanwhile.
        return await self._until_applied(existing, mark, still_due=gone)

    async def finish(self, listed: Sequence[str]) -> None:
        if self.unchanged:
            await self.collection.update_many(
                {"serverId": self.server_id, "name": {"$in": self.unchanged}},
                {"$set": {"lastDiscoveredAt": self.now, "lastSyncedAt": self.now}},
            )
            self.counts.unchanged += len(self.unchanged)
        gone_filter = {
            "serverId": self.server_id,
            "name": {"$nin": list(listed)},
            "registrationState": {"$ne": "stale"},
            "exposureState": {"$ne": "deleted"},
        }
        async for document in self.collection.find(gone_filter):
            if await self._mark_stale(document, gone_filter):
                self.counts.stale += 1
                self.changed["stale"].append(document["name"])
        await self.collection.update_many(
            {"serverId": self.server_id, "syncError": {"$ne": None}},
            {"$set": {"syncError": None}},
        )


async def sync_server_tools(
    *,
    server: MCPServer,
    discovered: Sequence[DiscoveredTool],
    trigger: SyncTrigger,
    actor_id: str = SYNC_ACTOR,
    default_exposure: ExposureState = "active",
) -> SyncRunResult:
    """Reconcile the catalog of ``server`` with the tools its upstream just listed.

    Recomputes the server document's exposed tools and drops cached tool sets before the
    ``SyncRun`` is recorded as finished (outcome ``success`` with counts, or ``error``), so a
    finished run means the new tools are served. Duplicate names in ``discovered`` keep the
    first.
    Raises RegistryError when a tool keeps changing under concurrent writes (the run is
    recorded as ``error``).
    """
    assert server.id is not None
    now = utcnow()
    run = SyncRun(
        server_id=server.id,
        server_name=server.server_name,
        trigger=trigger,
        actor_id=actor_id,
        started_at=now,
    )
    await run.insert()
    writer = _ToolSync(
        server_id=server.id,
        server_name=server.server_name,
        default_exposure=default_exposure,
        actor_id=actor_id,
        now=now,
    )
    unique: dict[str, DiscoveredTool] = {}
    for tool in discovered:
        unique.setdefault(tool.name, tool)
    try:
        existing = {
            document["name"]: document
            async for document in writer.collection.find({"serverId": server.id})
        }
        for name, tool in unique.items():
            await writer.apply(tool, existing.get(name))
        await writer.finish(list(unique))
        counts = writer.counts
        if counts.added or counts.updated or counts.stale or counts.reactivated:
            # Before the run is marked finished: whoever sees a finished run must not be
            # served the tool set from before it.
            catalog_cache.invalidate(server.id)
        exposed = await refresh_server_exposure(server_id=server.id)
    except RegistryError as exc:
        catalog_cache.invalidate(server.id)
        await _finish_run(run, outcome="error", error=exc.message, counts=writer.counts)
        raise
    await _finish_run(run, outcome="success", error=None, counts=writer.counts)
    if any(writer.changed.values()):
        await record_audit(
            action="sync",
            entity_type="server",
            entity_id=str(server.id),
            actor=actor_id,
            after={
                "run_id": str(run.id),
                "trigger": trigger,
                **{kind: names for kind, names in writer.changed.items() if names},
            },
        )
    log.info(
        "catalog_synced",
        server_id=str(server.id),
        server_name=server.server_name,
        trigger=trigger,
        **writer.counts.model_dump(),
    )
    return SyncRunResult(run=run, exposed_tools=exposed)


async def record_failed_sync(
    *, server: MCPServer, trigger: SyncTrigger, actor_id: str, error: str
) -> SyncRun:
    """Record a sync whose discovery failed: an ``error`` run and ``syncError`` on the tools."""
    assert server.id is not None
    now = utcnow()
    run = SyncRun(
        server_id=server.id,
        server_name=server.server_name,
        trigger=trigger,
        actor_id=actor_id,
        started_at=now,
        finished_at=now,
        outcome="error",
        error=error,
    )
    await run.insert()
    await Tool.get_pymongo_collection().update_many(
        {"serverId": server.id}, {"$set": {"syncError": error, "lastSyncedAt": now}}
    )
    log.info("catalog_sync_failed", server_id=str(server.id), trigger=trigger, error=error)
    return run


async def _finish_run(run: SyncRun, *, outcome: str, error: str | None, counts: SyncCounts) -> None:
    run.finished_at = utcnow()
    run.outcome = "success" if outcome == "success" else "error"
    run.error = error
    run.counts = counts
    await SyncRun.get_pymongo_collection().update_one(
        {"_id": run.id},
        {
            "$set": {
                "finishedAt": run.finished_at,
                "outcome": run.outcome,
                "error": error,
                "counts": counts.model_dump(),
            }
        },
    )


def exposed_tool_functions(
    tools: Sequence[Mapping[str, Any]], server_name: str
) -> dict[str, dict[str, Any]]:
    """The exposed tools in the external app's OpenAI function format, keyed by LibreChat name."""
    functions: dict[str, dict[str, Any]] = {}
    for tool in tools:
        key = tool_function_name(tool["name"], server_name)
        function: dict[str, Any] = {"name": key}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        function["parameters"] = tool.get("inputSchema") or {"type": "object"}
        functions[key] = {"type": "function", "function": function}
    return functions


async def refresh_server_exposure(*, server_id: ObjectId) -> list[str]:
    """Recompute the server document's ``config.tools``/``toolFunctions``/``numTools``.

    Only exposed tools count (active + selected, server not disabled). Writes only when they
    differ, as a compare-and-set on the three fields' stored values (the server is read before
    its tools, so a concurrent catalog change always leads to a later recompute that sees it);
    recomputes of one server are also serialised within this process. ``updatedAt`` is left
    alone: it versions the server's configuration, which people edit with optimistic
    concurrency, and a background tool change must not turn their next PATCH into a 409.
    Returns the exposed tool names; an unknown server gives an empty list.
    """
    lock = _exposure_locks.setdefault(server_id, asyncio.Lock())
    async with lock:
        return await _refresh_exposure(server_id)


async def _refresh_exposure(server_id: ObjectId) -> list[str]:
    servers = MCPServer.get_pymongo_collection()
    tools = Tool.get_pymongo_collection()
    projection = {
        "serverName": 1,
        "status": 1,
        "config.tools": 1,
        "config.toolFunctions": 1,
        "numTools": 1,
    }
    for _ in range(_CAS_ATTEMPTS):
        server = await servers.find_one({"_id": server_id}, projection=projection)
        if server is None:
            return []
        name = server["serverName"]
        await tools.update_many(
            {"serverId": server_id, "serverName": {"$ne": name}}, {"$set": {"serverName": name}}
        )
        exposed: list[dict[str, Any]] = []
        if server_exposes_tools(server.get("status")):
            exposed = (
                await tools.find(
                    {"serverId": server_id, **EXPOSED_FILTER},
                    projection={"name": 1, "description": 1, "inputSchema": 1},
                )
                .sort("_id", 1)  # discovery order, as registration stored it
                .to_list()
            )
        names = [tool["name"] for tool in exposed]
        functions = exposed_tool_functions(exposed, name)
        config = server.get("config") or {}
        desired = {
            "config.tools": TOOLS_SEPARATOR.join(names),
            "config.toolFunctions": functions,
            "numTools": len(names),
        }
        current = {
            "config.tools": config.get("tools"),
            "config.toolFunctions": config.get("toolFunctions"),
            "numTools": server.get("numTools"),
        }
        if desired == current:
            return names
        result = await servers.update_one({"_id": server_id, **current}, {"$set": desired})
        if result.matched_count:
            catalog_cache.invalidate(server_id)
            return names
    raise RegistryError("The server kept changing while its exposed tools were recomputed")


async def forget_server(*, server_id: ObjectId) -> int:
    """Drop a deleted server's catalog tools and sync schedule; returns the tools removed.

    ``tool_versions`` and ``sync_runs`` are kept as history.
    """
    removed = await Tool.get_pymongo_collection().delete_many({"serverId": server_id})
    await SyncSchedule.get_pymongo_collection().delete_many({"serverId": server_id})
    catalog_cache.invalidate(server_id)
    return removed.deleted_count
