"""Invalidation signals for the gateway's caches of the catalog and of the servers.

Every catalog change calls ``invalidate(server_id)``: it bumps a process-wide version counter,
drops that server's cached tool set (``registry.gateway.catalog.invalidate_catalogs``) and
notifies the registered listeners. A change to a server itself (toggle, update, delete) calls
``server_changed(server_id)``, which also makes the gateway forget the server
(``registry.gateway.lookup.servers_changed``: ``/mcp/{server}`` and the combined server's
visible servers), so a switched-off server is refused by the very next request. Caches in
other processes (other replicas) rely on their short TTL instead (docs/catalog.md).
"""

from __future__ import annotations

from collections.abc import Callable

from bson import ObjectId

from registry.gateway.catalog import invalidate_catalogs
from registry.gateway.lookup import servers_changed

Listener = Callable[[str | None], None]

_listeners: list[Listener] = []
_version = 0


def version() -> int:
    """A counter that grows whenever any server's exposed tools may have changed."""
    return _version


def add_listener(listener: Listener) -> None:
    """Call ``listener(server_id)`` (``None`` = every server) on each invalidation."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def invalidate(server_id: ObjectId | str | None = None) -> None:
    """Signal that the exposed tools of ``server_id`` (or of every server) may have changed."""
    global _version
    _version += 1
    key = str(server_id) if server_id is not None else None
    invalidate_catalogs(key)
    for listener in list(_listeners):
        listener(key)


def server_changed(server_id: ObjectId | str) -> None:
    """Signal that a server's status, configuration or existence changed: the gateway of this
    process forgets it at once (lookup, combined visible servers) and its tools."""
    servers_changed(str(server_id))
    invalidate(server_id)
