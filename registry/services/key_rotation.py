"""Re-encrypting every stored secret from the current ``CREDS_KEY`` to a new one.

What is rotated (docs/credentials.md "Key rotation"):

- ``mcpservers``: ``config.apiKey.key`` and ``config.oauth.client_secret``;
- ``tokens``: ``token`` of the credential records that hold an encrypted value: the MCP
  records (``mcp_oauth``, ``mcp_oauth_refresh``, ``mcp_oauth_client``, ``mcp_api_key``) and the
  external app's actions OAuth records (``oauth``, ``oauth_refresh``). Other records (e-mail
  verification, password reset) hold hashes, not ciphertexts, and are left alone.

Each value is decided on its own, so a run can stop anywhere and the next one finishes the job:

- v1/v2 values are tried under both keys (PKCS7 padding + strict UTF-8 make a false positive
  vanishingly rare). Only the new key → ``already_rotated``; only the old key → rotated; neither,
  or both (ambiguous) → reported as undecryptable and left untouched.
- v3 values (AES-CTR) carry no integrity check, so trying the new key proves nothing. Rotation
  always writes v2, so a v3 value can only be under the old key: it is decrypted with the old
  key and rotated, or reported when even that fails.

Writes are conditional on the old ciphertext (``{_id, field: old}``), so a value that a
concurrent writer replaced in the meantime is never overwritten (it is counted as
``changed_concurrently`` and picked up by the next run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from packages.database.encryption import DecryptionError, EncryptionService
from registry.services.token_types import STORED_TYPES

log = structlog.get_logger("registry.key_rotation")

SERVERS = "mcpservers"
TOKENS = "tokens"
SERVER_SECRET_FIELDS = ("config.apiKey.key", "config.oauth.client_secret")
TOKEN_SECRET_FIELDS = ("token",)
# The external app's actions store their OAuth tokens encrypted under the same key.
ENCRYPTED_TOKEN_TYPES = (*STORED_TYPES, "oauth", "oauth_refresh")
DEFAULT_BATCH_SIZE = 200

Decision = Literal["rotate", "already_rotated", "undecryptable"]


@dataclass
class CollectionReport:
    rotated: int = 0
    already_rotated: int = 0
    undecryptable: int = 0
    changed_concurrently: int = 0


@dataclass(frozen=True)
class UndecryptableValue:
    collection: str
    document_id: str
    field: str
    reason: str


@dataclass
class RotationReport:
    """What a run did (or, with ``dry_run``, would do)."""

    dry_run: bool
    collections: dict[str, CollectionReport] = field(
        default_factory=lambda: {SERVERS: CollectionReport(), TOKENS: CollectionReport()}
    )
    undecryptable: list[UndecryptableValue] = field(default_factory=list)
    complete: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "complete": self.complete,
            "collections": {name: vars(counts) for name, counts in self.collections.items()},
            "undecryptable": [vars(item) for item in self.undecryptable],
        }


def decide(value: str, *, old: EncryptionService, new: EncryptionService) -> tuple[Decision, str]:
    """What to do with one stored value: the decision and the plaintext (or the reason).

    Never raises; the returned text is the plaintext for ``rotate`` and a short, secret-free
    reason for ``undecryptable``.
    """
    if value.startswith("v3:"):
        try:
            return "rotate", old.decrypt(value)
        except DecryptionError:
            return "undecryptable", "v3 value does not decrypt under the current key"
    under_old = _try(old, value)
    under_new = _try(new, value)
    if under_old is not None and under_new is not None:
        return "undecryptable", "value decrypts under both keys (ambiguous)"
    if under_old is not None:
        return "rotate", under_old
    if under_new is not None:
        return "already_rotated", ""
    return "undecryptable", "value decrypts under neither key"


def _try(service: EncryptionService, value: str) -> str | None:
    try:
        return service.decrypt(value)
    except DecryptionError:
        return None


def _get_path(doc: dict[str, Any], path: str) -> Any:
    current: Any = doc
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


class _Budget:
    """How many more values may be rotated (None: unlimited); simulates an interruption."""

    def __init__(self, limit: int | None) -> None:
        self.remaining = limit

    def take(self) -> bool:
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


async def rotate_credentials(
    *,
    database: AsyncDatabase[dict[str, Any]],
    old: EncryptionService,
    new: EncryptionService,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_values: int | None = None,
    stop: asyncio.Event | None = None,
) -> RotationReport:
    """Re-encrypt every secret in ``mcpservers`` and ``tokens`` from ``old`` to ``new``.

    Documents are read in ``_id`` order, ``batch_size`` at a time; each batch's writes go in
    one unordered bulk write of conditional updates. ``max_values`` stops the run after that
    many rotations, and a set ``stop`` (an operator's Ctrl-C) before the next batch;
    ``complete`` is then False and a later run resumes where values still need it.
    ``dry_run`` counts what would be rotated and writes nothing. Raises ValueError when both
    keys are the same or ``batch_size`` is not positive.
    """
    if old.key_fingerprint() == new.key_fingerprint():
        raise ValueError("the new key is the current key")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport(dry_run=dry_run)
    budget = _Budget(max_values)
    plan: Sequence[tuple[str, dict[str, Any], tuple[str, ...]]] = (
        (SERVERS, {"$or": [{name: {"$exists": True}} for name in SERVER_SECRET_FIELDS]},
         SERVER_SECRET_FIELDS),
        (TOKENS, {"type": {"$in": list(ENCRYPTED_TOKEN_TYPES)}}, TOKEN_SECRET_FIELDS),
    )  # fmt: skip
    log.info(
        "key_rotation_started",
        old_key=old.key_fingerprint(),
        new_key=new.key_fingerprint(),
        dry_run=dry_run,
    )
    for collection, query, fields in plan:
        finished = await _rotate_collection(
            database=database,
            collection=collection,
            query=query,
            fields=fields,
            old=old,
            new=new,
            report=report,
            budget=budget,
            batch_size=batch_size,
            stop=stop,
        )
        if not finished:
            report.complete = False
            break
    log.info(
        "key_rotation_finished", **report.as_dict() | {"undecryptable": len(report.undecryptable)}
    )
    return report


async def _rotate_collection(
    *,
    database: AsyncDatabase[dict[str, Any]],
    collection: str,
    query: dict[str, Any],
    fields: tuple[str, ...],
    old: EncryptionService,
    new: EncryptionService,
    report: RotationReport,
    budget: _Budget,
    batch_size: int,
    stop: asyncio.Event | None,
) -> bool:
    """Rotate one collection; False when the budget ran out or ``stop`` was set first."""
    counts = report.collections[collection]
    coll = database[collection]
    projection = dict.fromkeys(fields, True)
    last_id: Any = None
    while True:
        if stop is not None and stop.is_set():
            return False
        batch_query = query if last_id is None else {**query, "_id": {"$gt": last_id}}
        cursor = coll.find(batch_query, projection=projection).sort("_id", 1).limit(batch_size)
        docs = await cursor.to_list(length=batch_size)
        if not docs:
            return True
        writes: list[UpdateOne] = []
        exhausted = False
        for doc in docs:
            for name in fields:
                value = _get_path(doc, name)
                if not isinstance(value, str) or not value:
                    continue
                decision, text = decide(value, old=old, new=new)
                if decision == "already_rotated":
                    counts.already_rotated += 1
                elif decision == "undecryptable":
                    counts.undecryptable += 1
                    report.undecryptable.append(
                        UndecryptableValue(collection, str(doc["_id"]), name, text)
                    )
                elif budget.take():
                    writes.append(
                        UpdateOne(
                            {"_id": doc["_id"], name: value}, {"$set": {name: new.encrypt(text)}}
                        )
                    )
                else:
                    exhausted = True
                    break
            if exhausted:
                break
        if writes and not report.dry_run:
            result = await coll.bulk_write(writes, ordered=False)
            counts.rotated += result.modified_count
            counts.changed_concurrently += len(writes) - result.matched_count
        elif writes:
            counts.rotated += len(writes)
        log.info(
            "key_rotation_batch_done",
            collection=collection,
            documents=len(docs),
            writes=len(writes),
        )
        if exhausted:
            return False
        last_id = docs[-1]["_id"]
