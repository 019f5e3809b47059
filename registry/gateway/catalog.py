"""The tool catalog as the gateway's per-call path sees it: exposed tools per server, cached.

``ToolCatalog.exposed(server_id)`` reads the server's exposed tools (active + selected) from
the ``tools`` collection once and keeps them for ``ttl_seconds``; ``exposed_many`` does the
same for many servers with one query (the combined server's ``tools/list``). ``invalidate``
drops one server's entry at once (the catalog services call ``invalidate_catalogs`` after
every change, so this process never serves a stale set; other replicas converge within the
TTL); other servers' entries stay. Argument validators are compiled once per (server, tool,
version).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from bson import ObjectId
from cachetools import LRUCache
from jsonschema import exceptions as jsonschema_errors
from jsonschema import validators
from jsonschema.protocols import Validator
from pymongo.asynchronous.database import AsyncDatabase

from packages.models.tools import EXPOSED_FILTER, is_exposed_state
from registry.auth import UserContext
from registry.auth.acl import tool_allowed_for

log = structlog.get_logger("registry.gateway")

COLLECTION = "tools"
DEFAULT_TTL_SECONDS = 5.0
MAX_CACHED_SERVERS = 10_000
MAX_VALIDATORS = 10_000
# Past this many servers ``exposed_many`` reads every exposed tool (one index range) and keeps
# those of the servers asked for: the embedded database evaluates ``$in`` in time quadratic in
# its length (1,000 server ids: ~3 s against ~0.1 s for the scan; docs/performance.md), and a
# caller asking about that many servers sees most of them anyway.
MAX_IN_IDS = 64
_PROJECTION = {
    "serverId": 1,
    "name": 1,
    "title": 1,
    "description": 1,
    "inputSchema": 1,
    "outputSchema": 1,
    "annotations": 1,
    "allowedRoles": 1,
    "allowedGroups": 1,
    "metadata": 1,
    "version": 1,
    "exposureState": 1,
    "registrationState": 1,
}


@dataclass(frozen=True, slots=True)
class CatalogTool:
    """One exposed tool: its definition as stored and the governance the gateway enforces."""

    id: str
    server_id: str
    name: str
    title: str | None
    description: str | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, Any] | None
    allowed_roles: tuple[str, ...]
    allowed_groups: tuple[str, ...]
    read_only: bool
    destructive: bool
    human_approval_required: bool
    version: int

    def allows(self, user: UserContext) -> bool:
        """``acl.tool_allowed_for`` on this tool's roles and groups."""
        return tool_allowed_for(
            user, allowed_roles=self.allowed_roles, allowed_groups=self.allowed_groups
        )

    def as_mcp(self, *, name: str | None = None) -> dict[str, Any]:
        """The tool as a ``tools/list`` entry (optionally under another name)."""
        entry: dict[str, Any] = {"name": name or self.name, "inputSchema": self.input_schema}
        if self.title is not None:
            entry["title"] = self.title
        if self.description is not None:
            entry["description"] = self.description
        if self.output_schema is not None:
            entry["outputSchema"] = self.output_schema
        if self.annotations:
            entry["annotations"] = self.annotations
        return entry


def _tool(server_id: str, document: Mapping[str, Any]) -> CatalogTool:
    metadata = document.get("metadata") or {}
    return CatalogTool(
        id=str(document["_id"]),
        server_id=server_id,
        name=document["name"],
        title=document.get("title"),
        description=document.get("description"),
        input_schema=document.get("inputSchema") or {"type": "object"},
        output_schema=document.get("outputSchema"),
        annotations=document.get("annotations"),
        allowed_roles=tuple(document.get("allowedRoles") or ()),
        allowed_groups=tuple(document.get("allowedGroups") or ()),
        read_only=bool(metadata.get("read_only")),
        destructive=bool(metadata.get("destructive")),
        human_approval_required=bool(metadata.get("human_approval_required")),
        version=int(document.get("version", 1)),
    )


@dataclass
class _Entry:
    tools: dict[str, CatalogTool]
    known: frozenset[str] | None
    """None when the entry was read with the exposed tools only (``exposed_many``)."""
    expires: float


class ToolCatalog:
    """Exposed tools per server for the gateway (see module doc)."""

    def __init__(
        self, database: AsyncDatabase[dict[str, Any]], *, ttl_seconds: float = DEFAULT_TTL_SECONDS
    ) -> None:
        self._collection = database[COLLECTION]
        self.ttl_seconds = ttl_seconds
        self._entries: LRUCache[str, _Entry] = LRUCache(maxsize=MAX_CACHED_SERVERS)
        self._validators: LRUCache[tuple[str, str, int], Validator | None] = LRUCache(
            maxsize=MAX_VALIDATORS
        )
        # A read that started before an invalidation of its server must not be cached: each
        # invalidation ticks the clock and stamps the server (or everything) with it.
        self._clock = 0
        self._stamps: LRUCache[str, int] = LRUCache(maxsize=MAX_CACHED_SERVERS)
        self._cleared = 0
        _catalogs.add(self)

    async def exposed(self, server_id: str) -> dict[str, CatalogTool]:
        """The exposed tools of ``server_id`` by name (cached; empty for an unknown server)."""
        entry = self._fresh(server_id, time.monotonic())
        if entry is None:
            entry = await self._load(server_id)
        return entry.tools

    async def known(self, server_id: str) -> frozenset[str]:
        """Every tool name the catalog holds for ``server_id``, in any state (cached)."""
        entry = self._fresh(server_id, time.monotonic())
        if entry is None or entry.known is None:
            entry = await self._load(server_id)
        assert entry.known is not None
        return entry.known

    async def exposed_many(self, server_ids: Iterable[str]) -> dict[str, dict[str, CatalogTool]]:
        """The exposed tools of each of ``server_ids`` (cached), with one query for all those
        not cached, whatever their number."""
        now = time.monotonic()
        found: dict[str, dict[str, CatalogTool]] = {}
        missing: dict[str, dict[str, CatalogTool]] = {}
        for server_id in server_ids:
            entry = self._fresh(server_id, now)
            if entry is None:
                missing[server_id] = {}
            else:
                found[server_id] = entry.tools
        if not missing:
            return found
        started = self._clock
        query: dict[str, Any] = dict(EXPOSED_FILTER)
        if len(missing) <= MAX_IN_IDS:
            query["serverId"] = {"$in": [ObjectId(server_id) for server_id in missing]}
        async for document in self._collection.find(query, projection=_PROJECTION):
            server_id = str(document["serverId"])
            tools = missing.get(server_id)
            if tools is not None:
                tools[document["name"]] = _tool(server_id, document)
        expires = time.monotonic() + self.ttl_seconds
        for server_id, tools in missing.items():
            # A complete entry read meanwhile (by the per-server path) is worth keeping.
            if self._fresh(server_id, now) is None:
                self._store(server_id, _Entry(tools=tools, known=None, expires=expires), started)
            found[server_id] = tools
        return found

    def _fresh(self, server_id: str, now: float) -> _Entry | None:
        entry = self._entries.get(server_id)
        if entry is not None and entry.expires > now:
            return entry
        return None

    async def _load(self, server_id: str) -> _Entry:
        started = self._clock
        cursor = self._collection.find({"serverId": ObjectId(server_id)}, projection=_PROJECTION)
        tools: dict[str, CatalogTool] = {}
        known: set[str] = set()
        async for document in cursor:
            known.add(document["name"])
            if is_exposed_state(document.get("exposureState"), document.get("registrationState")):
                tools[document["name"]] = _tool(server_id, document)
        entry = _Entry(
            tools=tools, known=frozenset(known), expires=time.monotonic() + self.ttl_seconds
        )
        self._store(server_id, entry, started)
        return entry

    def _store(self, server_id: str, entry: _Entry, started: int) -> None:
        if self._cleared > started or self._stamps.get(server_id, 0) > started:
            return  # invalidated while it was being read: serve it once, do not keep it
        self._entries[server_id] = entry

    def invalidate(self, server_id: str | None = None) -> None:
        """Forget ``server_id``'s tools (or every server's) so the next call reads them again.

        Other servers' cached tools stay: a change to one server must not make the next
        combined ``tools/list`` read every server again.
        """
        self._clock += 1
        if server_id is None:
            self._cleared = self._clock
            self._entries.clear()
        else:
            self._stamps[server_id] = self._clock
            self._entries.pop(server_id, None)

    def argument_error(self, tool: CatalogTool, arguments: Any) -> str | None:
        """Why ``arguments`` do not match the tool's stored ``inputSchema``, or None.

        The message names the failing field. A schema that is itself invalid is not enforced
        (logged once per tool version): the upstream remains the judge of its own inputs.
        """
        key = (tool.server_id, tool.name, tool.version)
        if key in self._validators:
            validator = self._validators[key]
        else:
            validator = _compile(tool)
            self._validators[key] = validator
        if validator is None:
            return None
        if arguments is None:
            arguments = {}
        error = jsonschema_errors.best_match(validator.iter_errors(arguments))
        if error is None:
            return None
        return f"Invalid arguments for tool '{tool.name}': {_describe(error)}"


def _compile(tool: CatalogTool) -> Validator | None:
    cls = validators.validator_for(tool.input_schema)
    try:
        cls.check_schema(tool.input_schema)
    except jsonschema_errors.SchemaError:
        log.warning("tool_schema_invalid", tool=tool.name, server_id=tool.server_id)
        return None
    validator: Validator = cls(tool.input_schema)
    return validator


def _describe(error: jsonschema_errors.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [name for name in required if name not in error.instance]
        field_name = ".".join(part for part in (path, missing[0] if missing else "") if part)
        return f"missing required field '{field_name}'"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = set(schema.get("properties") or {})
        extra = sorted(name for name in error.instance if name not in allowed)
        field_name = ".".join(part for part in (path, extra[0] if extra else "") if part)
        return f"field '{field_name}' is not allowed"
    if error.validator == "type":
        return f"field '{path or '(arguments)'}' must be of type {error.validator_value}"
    # Other keywords: jsonschema's own message, without echoing the (possibly long) value.
    return f"field '{path or '(arguments)'}' does not satisfy '{error.validator}'"


_catalogs: weakref.WeakSet[ToolCatalog] = weakref.WeakSet()


def invalidate_catalogs(server_id: str | None = None) -> None:
    """Invalidate every live ``ToolCatalog`` of this process (called by the catalog services)."""
    for catalog in list(_catalogs):
        catalog.invalidate(server_id)
