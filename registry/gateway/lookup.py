"""Finding the server a gateway path names, from MongoDB through a short in-memory cache.

``/mcp/{name}`` names the server whose ``path`` is ``/mcp/{name}`` (or, failing that, whose
``serverName`` is ``{name}``). A resolved server is trusted for ``REGISTRY_GATEWAY_SERVER_CACHE_
SECONDS``; after that one read refreshes it, and everything derived from the configuration
(the decrypted admin key, the timeout) is rebuilt only when ``updatedAt`` changed. Misses are
cached too, so unknown paths cannot turn into one query each. Concurrent misses for the same
name share one query.

``servers_changed(server_id)`` makes every lookup of this process forget that server (and
every cached miss) at once, and tells their subscribers (the combined server's visible-server
cache): the servers service calls it after a toggle, an update or a delete, so a switched-off
server is refused by the very next request here; other replicas converge within the TTL.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import aiohttp
import structlog
from bson import ObjectId
from cachetools import TTLCache
from pymongo.asynchronous.database import AsyncDatabase

from packages.database.encryption import DecryptionError, decrypt_value
from registry.errors import InvalidRequestError
from registry.gateway.upstream import UpstreamTransport, build_auth_headers, transport_for

log = structlog.get_logger("registry.gateway")

CredentialMode = Literal["none", "app", "user"]
Transport = UpstreamTransport
COLLECTION = "mcpservers"
GATEWAY_PREFIX = "/mcp/"
MAX_CACHED_SERVERS = 10_000
_PROJECTION = {
    "serverName": 1,
    "path": 1,
    "scope": 1,
    "author": 1,
    "status": 1,
    "config": 1,
    "updatedAt": 1,
}
# Headers an admin may not pin on an upstream through ``config.headers``: they belong to the
# relay or carry MCP session state.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "accept",
        "connection",
        "transfer-encoding",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    }
)


@dataclass(frozen=True, slots=True)
class ResolvedServer:
    """What the gateway needs to relay to one server, built once per configuration version."""

    id: str
    name: str
    path: str
    scope: str
    author: Any
    status: str
    transport: Transport | None
    """None for transports the gateway cannot relay (stdio, websocket)."""
    url: str
    config_version: str
    timeout: aiohttp.ClientTimeout
    timeout_seconds: float
    credential_mode: CredentialMode
    uses_oauth: bool
    authorization_type: Literal["bearer", "basic", "custom"]
    custom_header: str | None
    base_headers: dict[str, str]
    """Static ``config.headers`` plus, for app credentials, the decrypted key's header."""
    credential_problem: str | None
    """Why the server's own credential is unusable (e.g. it no longer decrypts), or None."""
    known_tools: frozenset[str] = field(default_factory=frozenset)

    @property
    def object_id(self) -> ObjectId:
        return ObjectId(self.id)

    @property
    def gateway_name(self) -> str:
        """The ``{name}`` of ``/mcp/{name}`` that finds this server (``gateway_name_for``)."""
        return gateway_name_for(self.path, self.name)


def gateway_name_for(path: object, server_name: str) -> str:
    """The ``{name}`` of ``/mcp/{name}`` that finds a server: its path's last segment when the
    path is ``/mcp/{name}``, else its ``serverName`` (see ``ServerLookup``)."""
    text = str(path or "")
    name = text.removeprefix(GATEWAY_PREFIX)
    if text.startswith(GATEWAY_PREFIX) and name and "/" not in name:
        return name
    return server_name


def credential_mode(doc: dict[str, Any]) -> CredentialMode:
    """Whose credential reaches the upstream (documented in docs/gateway.md).

    OAuth servers and ``apiKey.source: user`` use the caller's own credential; an admin key
    (``apiKey.source: admin``) is the server's for everyone; a ``shared_user`` server without
    any key configuration still expects each user's own key; anything else sends none.
    """
    config = doc.get("config") or {}
    api_key = config.get("apiKey") or {}
    if config.get("requiresOAuth") or api_key.get("source") == "user":
        return "user"
    if api_key.get("source") == "admin":
        return "app"
    if doc.get("scope") == "shared_user":
        return "user"
    return "none"


def config_version(doc: dict[str, Any]) -> str:
    updated = doc.get("updatedAt")
    return updated.isoformat() if isinstance(updated, datetime) else str(updated)


def _static_headers(config: dict[str, Any]) -> dict[str, str]:
    headers = config.get("headers") or {}
    # LibreChat placeholders ({{LIBRECHAT_USER_ID}}, ${ENV}) are resolved by the external app's
    # own runtime; the gateway does not expand them, so such headers are not sent at all.
    return {
        str(name): str(value)
        for name, value in headers.items()
        if isinstance(value, str)
        and str(name).lower() not in _RESERVED_HEADERS
        and "{{" not in value
        and "${" not in value
    }


def build_server(doc: dict[str, Any], *, default_timeout_seconds: float) -> ResolvedServer:
    """A ResolvedServer from a raw ``mcpservers`` document (decrypts an admin key once)."""
    config = doc.get("config") or {}
    api_key = config.get("apiKey") or {}
    mode = credential_mode(doc)
    authorization_type: Literal["bearer", "basic", "custom"] = "bearer"
    if api_key.get("authorization_type") in ("basic", "custom"):
        authorization_type = api_key["authorization_type"]
    custom_header = api_key.get("custom_header")
    headers = _static_headers(config)
    problem: str | None = None
    if mode == "app":
        problem = _add_app_key(
            headers,
            ciphertext=api_key.get("key"),
            authorization_type=authorization_type,
            custom_header=custom_header,
            server_name=str(doc.get("serverName")),
        )
    timeout_ms = config.get("timeout")
    timeout_seconds = (
        timeout_ms / 1000
        if isinstance(timeout_ms, int | float) and timeout_ms > 0
        else default_timeout_seconds
    )
    tools = config.get("tools")
    known = (
        frozenset(t.strip() for t in tools.split(",") if t.strip())
        if isinstance(tools, str)
        else frozenset()
    )
    return ResolvedServer(
        id=str(doc["_id"]),
        name=str(doc.get("serverName")),
        path=str(doc.get("path")),
        scope=str(doc.get("scope")),
        author=doc.get("author"),
        status=str(doc.get("status") or "active"),
        transport=transport_for(config.get("type")),
        url=str(config.get("url") or ""),
        config_version=config_version(doc),
        # sock_read bounds every wait for upstream bytes (headers, then each chunk), so a
        # hung upstream is detected even on a response that already started streaming.
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=timeout_seconds, sock_read=timeout_seconds
        ),
        timeout_seconds=timeout_seconds,
        credential_mode=mode,
        uses_oauth=bool(config.get("requiresOAuth")),
        authorization_type=authorization_type,
        custom_header=custom_header if isinstance(custom_header, str) else None,
        base_headers=headers,
        credential_problem=problem,
        known_tools=known,
    )


def _add_app_key(
    headers: dict[str, str],
    *,
    ciphertext: object,
    authorization_type: Literal["bearer", "basic", "custom"],
    custom_header: str | None,
    server_name: str,
) -> str | None:
    if not isinstance(ciphertext, str) or not ciphertext:
        return f"Server '{server_name}' has no API key configured; an admin must set one"
    try:
        key = decrypt_value(ciphertext)
        headers.update(
            build_auth_headers(
                authorization_type=authorization_type, key=key, custom_header=custom_header
            )
        )
    except DecryptionError:
        log.warning("server_key_undecryptable", server=server_name)
        return (
            f"The API key of server '{server_name}' cannot be decrypted with the configured "
            "CREDS_KEY; an admin must enter it again"
        )
    except InvalidRequestError as exc:
        return f"The API key configuration of server '{server_name}' is invalid: {exc.message}"
    return None


class ServerLookup:
    """Cached ``name → ResolvedServer | None`` with a freshness window in seconds."""

    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        *,
        ttl_seconds: float,
        default_timeout_seconds: float,
    ) -> None:
        self._collection = database[COLLECTION]
        self._ttl = ttl_seconds
        self._default_timeout = default_timeout_seconds
        self._cache: TTLCache[str, tuple[ResolvedServer | None, float]] = TTLCache(
            maxsize=MAX_CACHED_SERVERS, ttl=max(ttl_seconds, 0.001) * 20
        )
        self._inflight: dict[str, asyncio.Future[ResolvedServer | None]] = {}
        # Ticks on every ``forget_server``: a read that started before one is not cached.
        self._clock = 0
        self._subscribers: list[Callable[[str | None], None]] = []
        _lookups.add(self)

    async def resolve(self, name: str) -> ResolvedServer | None:
        """The server ``/mcp/{name}`` names, or None when there is none."""
        cached = self._cache.get(name)
        if cached is not None and time.monotonic() - cached[1] < self._ttl:
            return cached[0]
        pending = self._inflight.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ResolvedServer | None] = asyncio.get_running_loop().create_future()
        self._inflight[name] = future
        started = self._clock
        try:
            server = await self._load(name, previous=cached[0] if cached else None)
        except BaseException as exc:
            future.set_exception(exc)
            # Nobody else may be waiting; retrieve it so asyncio does not warn.
            future.exception()
            raise
        finally:
            if self._inflight.get(name) is future:
                del self._inflight[name]
        future.set_result(server)
        if self._clock == started:
            self._cache[name] = (server, time.monotonic())
        return server

    def subscribe(self, subscriber: Callable[[str | None], None]) -> None:
        """Call ``subscriber(server_id)`` whenever ``forget_server`` runs."""
        self._subscribers.append(subscriber)

    def forget_server(self, server_id: str | None = None) -> None:
        """Server ``server_id`` (None: any server) changed or was deleted: drop it, and every
        cached miss (its new path may be one), so the next request reads it again."""
        self._clock += 1
        # Reads under way started before the change: later requests must not join them.
        self._inflight.clear()
        for name, (server, _) in list(self._cache.items()):
            if server_id is None or server is None or server.id == server_id:
                self._cache.pop(name, None)
        for subscriber in self._subscribers:
            subscriber(server_id)

    async def _load(self, name: str, *, previous: ResolvedServer | None) -> ResolvedServer | None:
        doc = await self._collection.find_one({"path": f"/mcp/{name}"}, _PROJECTION)
        if doc is None:
            doc = await self._collection.find_one({"serverName": name}, _PROJECTION)
        if doc is None:
            return None
        if (
            previous is not None
            and previous.id == str(doc["_id"])
            and previous.config_version == config_version(doc)
            and previous.status == str(doc.get("status") or "active")
        ):
            return previous
        return build_server(doc, default_timeout_seconds=self._default_timeout)


_lookups: weakref.WeakSet[ServerLookup] = weakref.WeakSet()


def servers_changed(server_id: str | None = None) -> None:
    """Make every ``ServerLookup`` of this process (and its subscribers) forget ``server_id``
    (None: every server) at once; called by the servers service after a change."""
    for lookup in list(_lookups):
        lookup.forget_server(server_id)
