"""Per-tool policy of the gateway, from the tool catalog (docs/catalog.md, "Gateway").

The gateway binds its ``ToolPolicy`` to the request context (``bind``); the module functions
(``filter_tools``, ``tool_denial``, ``check_arguments``) apply the bound policy, and allow
everything when none is bound (a gateway built without a catalog, e.g. in unit tests).

- ``tools/list``: only exposed tools (active + selected) that the caller's role or groups may
  use (``acl.tool_allowed_for``) pass.
- ``tools/call``: anything else is refused before the upstream is contacted; arguments are
  validated against the stored ``inputSchema`` (JSON-RPC -32602 naming the field);
  ``human_approval_required`` tools are refused (approval is a later feature); calls of
  ``destructive`` tools are logged and audited (``tool_call_destructive``, no arguments).

Everything here runs on the per-call path: the catalog is an in-memory cache invalidated by
every catalog change (``registry.gateway.catalog``), so a call costs dictionary lookups and,
once per tool version, a schema compilation.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from registry.auth import UserContext
from registry.gateway.background import BackgroundTasks
from registry.gateway.catalog import CatalogTool, ToolCatalog
from registry.gateway.jsonrpc import RpcError
from registry.gateway.lookup import ResolvedServer

log = structlog.get_logger("registry.gateway")

INVALID_PARAMS = -32602
APPROVAL_REQUIRED = -32013
AUDIT_COLLECTION = "audit_logs"
SYNC_REQUEST_INTERVAL_SECONDS = 30.0

RequestSync = Callable[[str, str], None]

LIST_CHANGED_REASON = "list_changed"
_LIST_CHANGED_METHOD = re.compile(rb'"method"\s{0,8}:\s{0,8}"notifications/tools/list_changed"')
# Longer than the longest match, so a match split across chunks is still seen whole.
_SCAN_TAIL_BYTES = 64


class ListChangedScanner:
    """Spots a ``notifications/tools/list_changed`` message in a relayed byte stream (chunks
    may split it) without parsing the stream.

    Only the unescaped ``"method": "notifications/tools/list_changed"`` of a JSON-RPC message
    counts: the same words inside a tool result are escaped JSON string content (``\\"``), so
    an upstream's output cannot make the gateway request syncs.
    """

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> bool:
        window = self._tail + chunk
        matches = list(_LIST_CHANGED_METHOD.finditer(window))
        if not matches:
            self._tail = window[-_SCAN_TAIL_BYTES:]
            return False
        # Keep only what follows the last match, so a match is never reported twice.
        self._tail = window[matches[-1].end() :][-_SCAN_TAIL_BYTES:]
        return True


_current: contextvars.ContextVar[ToolPolicy | None] = contextvars.ContextVar(
    "gateway_tool_policy", default=None
)


def bind(policy: ToolPolicy | None) -> None:
    """Make ``policy`` the one the module functions apply in the current request context."""
    _current.set(policy)


async def filter_tools(
    *, user: UserContext, server: ResolvedServer, tools: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The tools of a ``tools/list`` result that ``user`` may see."""
    policy = _current.get()
    if policy is None:
        return tools
    return await policy.filter_tools(user=user, server=server, tools=tools)


async def tool_denial(*, user: UserContext, server: ResolvedServer, tool: str) -> str | None:
    """Why ``user`` may not call ``tool`` on ``server``, or None when the call is allowed.

    A denied call is answered with a JSON-RPC error and never reaches the upstream.
    """
    policy = _current.get()
    if policy is None:
        return None
    return await policy.denial(user=user, server=server, tool=tool)


async def check_arguments(
    *, user: UserContext, server: ResolvedServer, tool: str, arguments: Any
) -> None:
    """Raise RpcError when an allowed call must still not go out (invalid arguments,
    approval required); flag destructive calls in the log and the audit trail."""
    policy = _current.get()
    if policy is not None:
        await policy.check_arguments(user=user, server=server, tool=tool, arguments=arguments)


class ToolPolicy:
    """The catalog's rules for one gateway process."""

    def __init__(
        self,
        *,
        catalog: ToolCatalog,
        database: AsyncDatabase[dict[str, Any]],
        request_sync: Callable[[], RequestSync | None],
        uncatalogued_passthrough: bool,
    ) -> None:
        self.catalog = catalog
        self.uncatalogued_passthrough = uncatalogued_passthrough
        """A server the catalog knows nothing about yet (never synced, e.g. written by the
        external app) is relayed as the default exposure would govern it: everything when
        ``DEFAULT_TOOL_EXPOSURE=active``, nothing when ``draft``."""
        self._audit = database[AUDIT_COLLECTION]
        self._request_sync = request_sync
        self._last_request: dict[str, float] = {}
        self._audits = BackgroundTasks(kind="destructive_call_audit")

    async def filter_tools(
        self, *, user: UserContext, server: ResolvedServer, tools: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The entries of an upstream ``tools/list`` result that ``user`` may see."""
        known = await self.catalog.known(server.id)
        if not known:
            if tools:
                # Never synced (e.g. written by the external app): catalog it soon so its
                # tools are governed individually from then on.
                self.tools_changed(server, reason="uncatalogued")
            return tools if self.uncatalogued_passthrough else []
        exposed = await self.catalog.exposed(server.id)
        visible: list[dict[str, Any]] = []
        drift = False
        for tool in tools:
            name = tool.get("name")
            if not isinstance(name, str):
                continue
            drift = drift or name not in known
            entry = exposed.get(name)
            if entry is not None and entry.allows(user):
                visible.append(tool)
        if drift:
            # The upstream lists a tool the catalog has never seen: sync soon, so it is
            # governed (and, with the default exposure, offered) without a manual sync.
            self.tools_changed(server, reason="tools_list_drift")
        return visible

    async def denial(self, *, user: UserContext, server: ResolvedServer, tool: str) -> str | None:
        """Why ``user`` may not call ``tool``: not exposed, or not for its role/groups."""
        known = await self.catalog.known(server.id)
        if not known and self.uncatalogued_passthrough:
            return None
        entry = (await self.catalog.exposed(server.id)).get(tool)
        if entry is None or not entry.allows(user):
            return f"Tool '{tool}' is not available on server '{server.name}'"
        return None

    async def check_arguments(
        self, *, user: UserContext, server: ResolvedServer, tool: str, arguments: Any
    ) -> None:
        """Validate ``arguments``, refuse approval-gated tools, flag destructive ones."""
        entry = (await self.catalog.exposed(server.id)).get(tool)
        if entry is None:
            return  # an uncatalogued server (passthrough): nothing stored to check against
        problem = self.catalog.argument_error(entry, arguments)
        if problem is not None:
            raise RpcError(INVALID_PARAMS, problem, outcome="invalid_params")
        if entry.human_approval_required:
            raise RpcError(
                APPROVAL_REQUIRED,
                f"Tool '{tool}' requires human approval before it can be called; approval "
                "requests are not supported yet, so the call was not made",
                outcome="approval_required",
            )
        if entry.destructive:
            log.warning(
                "destructive_tool_called", user_id=user.user_id, server=server.name, tool=tool
            )
            self._audits.spawn(self._audit_destructive(user, server, entry))

    def tools_changed(self, server: ResolvedServer, *, reason: str) -> None:
        """The upstream's tools changed: request a prompt sync of ``server``'s catalog.

        ``list_changed`` notifications always request one (the worker coalesces requests);
        drift seen in a ``tools/list`` result at most once per
        ``SYNC_REQUEST_INTERVAL_SECONDS``. A no-op when no sync worker runs.
        """
        now = time.monotonic()
        recent = now - self._last_request.get(server.id, -1e9) < SYNC_REQUEST_INTERVAL_SECONDS
        if reason != LIST_CHANGED_REASON and recent:
            return
        request = self._request_sync()
        if request is None:
            return
        self._last_request[server.id] = now
        log.info("upstream_tools_changed", server=server.name, reason=reason)
        request(server.id, "list_changed")

    async def drain(self) -> None:
        """Wait (bounded) for pending audit writes; used at shutdown and by tests."""
        await self._audits.drain()

    async def _audit_destructive(
        self, user: UserContext, server: ResolvedServer, tool: CatalogTool
    ) -> None:
        # The arguments are left out on purpose: they may carry secrets or personal data.
        entry = {
            "action": "tool_call_destructive",
            "entity_type": "tool",
            "entity_id": ObjectId(tool.id),
            "user_id": user.object_id or user.user_id,
            "changes": {"before": None, "after": {"server": server.name, "tool": tool.name}},
            "request_id": structlog.contextvars.get_contextvars().get("request_id"),
            "timestamp": datetime.now(UTC),
        }
        try:
            await self._audit.insert_one(entry)
        except Exception as exc:  # a background task boundary: log once
            log.warning("destructive_call_audit_failed", error=type(exc).__name__)
