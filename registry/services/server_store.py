"""Persistence primitives for ``mcpservers``: load with an access check, compare-and-set.

Writes to an existing server are conditional updates on ``updatedAt`` (never
read-then-replace): the filter names the ``updatedAt`` the change was computed from and the
new stamp is strictly later (``next_updated_at``), so of two concurrent writers exactly one
wins. ``DuplicateKeyError`` from the unique indexes becomes ConflictError here.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from pydantic import ValidationError
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from packages.models import SCHEMA_VERSION, MCPServer
from registry.auth import UserContext
from registry.auth.acl import SERVER_NOT_FOUND, Action, authorize_server
from registry.errors import (
    ConflictError,
    IncompatibleDocumentError,
    NotFoundError,
    StaleUpdateError,
)
from registry.services.keyed_locks import KeyedLocks
from registry.services.server_documents import next_updated_at, to_bson_time

STALE_MESSAGE = "Server was modified by another process"
# Compare-and-set attempts for writes that carry no expected updatedAt (toggle, refresh, a
# PATCH without updatedAt) before giving up with 409. Writers in this process take turns (see
# _write_locks), so only writers in other processes (replicas, the external app) contend.
MAX_WRITE_ATTEMPTS = 8
# Upper bound of the random pause after a lost race, times the attempt number: without it the
# losers of one round re-read at once and collide again.
RETRY_PAUSE_SECONDS = 0.005

# Concurrent writes to one server in this process would otherwise all read the same updatedAt
# and all but one lose; 16 concurrent toggles exhausted the attempts and answered 409.
_write_locks = KeyedLocks()

Operations = tuple[dict[str, Any], dict[str, str]]


def collection() -> AsyncCollection[dict[str, Any]]:
    collection: AsyncCollection[dict[str, Any]] = MCPServer.get_pymongo_collection()
    return collection


def object_id(server_id: str) -> ObjectId:
    if not ObjectId.is_valid(server_id) or len(server_id) != 24:
        raise NotFoundError(SERVER_NOT_FOUND, resource="server", resource_id=server_id)
    return ObjectId(server_id)


def as_server(raw: Mapping[str, Any]) -> MCPServer:
    """Validate a stored document; IncompatibleDocumentError when it fails our models.

    The collection is shared: the external app (or a newer schema release) may store values
    our generated models reject, e.g. a v0.0.32 Unicode title read by v0.0.31 models.
    """
    try:
        return MCPServer.model_validate(dict(raw))
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in err["loc"]) for err in exc.errors()})
        raise IncompatibleDocumentError(
            "The stored server document does not match the shared schema this service runs "
            f"({SCHEMA_VERSION}); fields: {', '.join(fields[:5])}",
            resource="server",
            resource_id=str(raw.get("_id")),
        ) from exc


@dataclass(frozen=True)
class _StoredAccess:
    """The two fields an access decision needs, read without validating the whole document."""

    author: Any
    scope: str | None


def conflict(exc: DuplicateKeyError) -> ConflictError:
    key = " ".join(str(name) for name in (exc.details or {}).get("keyPattern", {}))
    field = "path" if key == "path" else "serverName"
    return ConflictError(f"A server with this {field} already exists", resource="server")


async def load(principal: UserContext, oid: ObjectId, action: Action) -> dict[str, Any]:
    """The raw stored document, if ``principal`` may do ``action`` with it (else raise)."""
    raw = await collection().find_one({"_id": oid})
    if raw is None:
        raise NotFoundError(SERVER_NOT_FOUND, resource="server", resource_id=str(oid))
    authorize_server(
        principal, action, _StoredAccess(author=raw.get("author"), scope=raw.get("scope"))
    )
    return raw


async def compare_and_set(
    *,
    principal: UserContext,
    oid: ObjectId,
    action: Action,
    build: Callable[[Mapping[str, Any]], Operations],
    provided_updated_at: datetime | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply ``build(current)`` as a conditional update on ``updatedAt``; (before, after).

    With ``provided_updated_at`` the caller's view must be current, otherwise
    StaleUpdateError; without it a lost race is retried on a fresh read.
    """
    provided = to_bson_time(provided_updated_at) if provided_updated_at else None
    async with _write_locks.lock(oid):
        return await _compare_and_set_locked(
            principal=principal, oid=oid, action=action, build=build, provided=provided
        )


async def _compare_and_set_locked(
    *,
    principal: UserContext,
    oid: ObjectId,
    action: Action,
    build: Callable[[Mapping[str, Any]], Operations],
    provided: datetime | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
        before = await load(principal, oid, action)
        current = before.get("updatedAt")
        if provided is not None and (current is None or to_bson_time(current) != provided):
            raise _stale(current, provided, oid)
        to_set, to_unset = build(before)
        to_set["updatedAt"] = next_updated_at(current)
        operations: dict[str, Any] = {"$set": to_set}
        if to_unset:
            operations["$unset"] = to_unset
        try:
            after = await collection().find_one_and_update(
                {"_id": oid, "updatedAt": current},
                operations,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError as exc:
            raise conflict(exc) from exc
        if after is not None:
            return before, after
        if provided is not None:
            latest = await collection().find_one({"_id": oid}, {"updatedAt": 1})
            if latest is None:
                raise NotFoundError(SERVER_NOT_FOUND, resource="server", resource_id=str(oid))
            raise _stale(latest.get("updatedAt"), provided, oid)
        await asyncio.sleep(random.uniform(0, RETRY_PAUSE_SECONDS * attempt))  # noqa: S311
    raise ConflictError("Server is being modified concurrently; retry", resource="server")


def _stale(current: datetime | None, provided: datetime, oid: ObjectId) -> StaleUpdateError:
    return StaleUpdateError(
        STALE_MESSAGE,
        current_updated_at=to_bson_time(current) if current else None,
        provided_updated_at=provided,
        resource="server",
        resource_id=str(oid),
    )
