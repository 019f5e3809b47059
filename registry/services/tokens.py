"""Users' stored credentials (collection ``tokens``): store, read, list, refresh, delete.

Records are written exactly as the external app (LibreChat's ``MCPTokenStorage``) writes them:
``userId`` (ObjectId), ``type``, ``identifier``, ``token`` (encryptV2), ``createdAt``,
``expiresAt``, ``metadata`` (as given, omitted when absent) and ``__v: 0``; nothing else. See
``registry.services.token_types`` for the type/identifier mapping.

Only the four MCP record types are visible here: the collection also holds the external app's
own records (e-mail verification, password reset, actions' OAuth) and those are never listed,
read or deleted through this API. A record past ``expiresAt`` is treated as absent at once,
before MongoDB's TTL monitor removes it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from packages.database.encryption import DecryptionError, decrypt_value, encrypt_value
from packages.models import Token
from registry.auth import UserContext, authorize_token_read_value, token_owner_filter
from registry.errors import (
    ConflictError,
    IncompatibleDocumentError,
    NotFoundError,
    PermissionDeniedError,
)
from registry.gateway.credentials import forget_user_credentials
from registry.services.audit import record_audit
from registry.services.keyed_locks import KeyedLocks
from registry.services.pagination import PageWindow
from registry.services.token_types import (
    ACCESS,
    API_KEY,
    KIND_BY_API_TYPE,
    KIND_BY_STORED_TYPE,
    STORED_TYPES,
    ApiTokenType,
    api_identifier,
    server_name_from,
    stored_identifiers_for,
)

log = structlog.get_logger("registry.tokens")
_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")

TOKEN_NOT_FOUND = "Token not found or expired"
ENTITY = "token"
# Lifetimes used when a request gives no expiry. A refresh token's lifetime is rarely
# announced by the provider; LibreChat keeps such records for a year as well.
DEFAULT_LIFETIME: dict[str, timedelta] = {
    "oauth_access": timedelta(hours=8),
    "oauth_refresh": timedelta(days=365),
    "oauth_client": timedelta(days=365),
    "api_key": timedelta(days=365),
}


class UndecryptableTokenError(ConflictError):
    """The stored value does not decrypt under the configured ``CREDS_KEY`` (409)."""

    code = "undecryptable"


@dataclass(frozen=True)
class StoredToken:
    """A credential record as the API shows it (never the value)."""

    id: str
    user_id: str
    type: str
    identifier: str | None
    stored_type: str
    stored_identifier: str | None
    created_at: datetime
    expires_at: datetime
    metadata: dict[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class TokenPage(PageWindow):
    tokens: list[StoredToken]


def parse_token_id(token_id: str) -> ObjectId | None:
    """The ObjectId a path id spells (24 hex characters), or None."""
    return ObjectId(token_id) if _OBJECT_ID.fullmatch(token_id) else None


def utcnow() -> datetime:
    """Now in UTC, truncated to milliseconds (what MongoDB stores)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def tokens_collection() -> AsyncCollection[dict[str, Any]]:
    collection: AsyncCollection[dict[str, Any]] = Token.get_pymongo_collection()
    return collection


def _owner_id(user: UserContext) -> ObjectId:
    oid = user.object_id
    if oid is None:
        raise PermissionDeniedError(
            "Stored credentials belong to a user id that is a MongoDB ObjectId; this caller's "
            "id is not one",
            resource=ENTITY,
        )
    return oid


def as_stored(doc: dict[str, Any]) -> StoredToken:
    """The API's view of a stored MCP credential record.

    The collection is shared, so a record may break the schema: a missing or non-date
    ``createdAt`` falls back to the time in its ObjectId, a non-text ``identifier`` reads as
    none; a record whose ``expiresAt`` is not a date raises IncompatibleDocumentError (its
    expiry cannot be judged).
    """
    stored_type = str(doc.get("type"))
    kind = KIND_BY_STORED_TYPE[stored_type]
    stored_identifier = doc.get("identifier")
    if not isinstance(stored_identifier, str):
        stored_identifier = None
    created_at = doc.get("createdAt")
    if not isinstance(created_at, datetime) and isinstance(doc["_id"], ObjectId):
        created_at = doc["_id"].generation_time
    expires_at = doc.get("expiresAt")
    if not isinstance(created_at, datetime) or not isinstance(expires_at, datetime):
        raise IncompatibleDocumentError(
            "The stored token record does not match the shared schema (createdAt/expiresAt)",
            resource=ENTITY,
            resource_id=str(doc["_id"]),
        )
    metadata = doc.get("metadata")
    return StoredToken(
        id=str(doc["_id"]),
        user_id=str(doc.get("userId")),
        type=kind.api_type,
        identifier=api_identifier(stored_identifier, kind),
        stored_type=stored_type,
        stored_identifier=stored_identifier,
        created_at=created_at,
        expires_at=expires_at,
        metadata=_jsonable(metadata) if isinstance(metadata, dict) else None,
    )


def _listable(docs: list[dict[str, Any]]) -> list[StoredToken]:
    """``as_stored`` for each record; one the external app broke is skipped and logged, so
    it cannot take the whole list down."""
    listed: list[StoredToken] = []
    for doc in docs:
        try:
            listed.append(as_stored(doc))
        except IncompatibleDocumentError:
            log.warning("token_document_incompatible", token_id=str(doc["_id"]))
    return listed


def _jsonable(value: Any) -> Any:
    """Metadata as JSON: ObjectIds (the external app may store some) become strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, ObjectId):
        return str(value)
    return value


def decrypted_value(doc: dict[str, Any]) -> str:
    """The record's decrypted value; UndecryptableTokenError (logged) when it does not
    decrypt with the configured key."""
    try:
        return decrypt_value(str(doc.get("token") or ""))
    except DecryptionError as exc:
        log.warning("token_decryption_failed", token_id=str(doc["_id"]), reason=exc.reason)
        raise UndecryptableTokenError(
            "Token value cannot be decrypted with the configured key",
            resource=ENTITY,
            resource_id=str(doc["_id"]),
        ) from None


def live_filter(token_id: str, now: datetime) -> dict[str, Any]:
    """The filter for an unexpired MCP record by id; NotFoundError for a malformed id."""
    oid = parse_token_id(token_id)
    if oid is None:
        raise NotFoundError(TOKEN_NOT_FOUND, resource=ENTITY, resource_id=token_id)
    return {"_id": oid, "type": {"$in": list(STORED_TYPES)}, "expiresAt": {"$gt": now}}


# Concurrent upserts of one (user, type, identifier) can both insert: MongoDB only prevents
# that with a unique index, and the collection is the external app's, which does not declare
# one (and may write such duplicates itself). Serialise them within this process; readers pick
# the newest record anyway.
_store_locks = KeyedLocks()


def record_upsert(
    value: str, expires_at: datetime, now: datetime, *, record_id: ObjectId | None = None
) -> dict[str, Any]:
    """The update that gives a record its (encrypted) value and expiry, creating it, as
    LibreChat does, with ``_id`` (``record_id`` or a new one), ``createdAt`` and ``__v``."""
    return {
        "$set": {"token": encrypt_value(value), "expiresAt": expires_at},
        "$setOnInsert": {"_id": record_id or ObjectId(), "createdAt": now, "__v": 0},
    }


async def store_token(
    *,
    user: UserContext,
    api_type: ApiTokenType,
    identifier: str,
    value: str,
    expires_at: datetime | None,
    metadata: dict[str, Any] | None,
    metadata_given: bool = True,
) -> StoredToken:
    """Store the caller's credential for (type, server), replacing the value of an existing one.

    One record per (user, type, identifier), as LibreChat keeps it: an existing record keeps
    its id and ``createdAt`` and gets the new value and expiry. ``metadata`` replaces the
    stored one, ``None`` removes it; with ``metadata_given=False`` the stored metadata stays
    (LibreChat's update keeps it, and its OAuth refresh reads the token endpoint from the
    client record's metadata). The value is
    encrypted (encryptV2) before it is written. Raises PermissionDeniedError for a caller
    whose id is not an ObjectId and InvalidRequestError for a malformed identifier.
    """
    kind = KIND_BY_API_TYPE[api_type]
    owner = _owner_id(user)
    stored_identifier = kind.stored_identifier(server_name_from(identifier, kind))
    now = utcnow()
    new_id = ObjectId()
    expiry = (expires_at or now + DEFAULT_LIFETIME[api_type]).astimezone(UTC)
    update = record_upsert(value, expiry, now, record_id=new_id)
    if metadata is not None:
        update["$set"]["metadata"] = metadata
    elif metadata_given:
        update["$unset"] = {"metadata": ""}
    key = (owner, kind.stored_type, stored_identifier)
    async with _store_locks.lock(key):
        doc = await tokens_collection().find_one_and_update(
            {"userId": owner, "type": kind.stored_type, "identifier": stored_identifier},
            update,
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
    assert doc is not None  # upsert=True always returns the document
    # At once after the write: the old value must not be served even if what follows fails.
    credential_changed(doc)
    stored = as_stored(doc)
    replaced = doc["_id"] != new_id
    await record_audit(
        action="update" if replaced else "create",
        entity_type=ENTITY,
        entity_id=stored.id,
        actor=user,
        after=audit_view(stored),
    )
    log.info("token_stored", token_id=stored.id, type=stored.type, replaced=replaced)
    return stored


async def get_token_value(*, user: UserContext, token_id: str) -> tuple[StoredToken, str]:
    """The caller's own unexpired credential and its decrypted value.

    Raises NotFoundError ("Token not found or expired") for a malformed id, another user's
    record (admins included) or an expired one, and UndecryptableTokenError when the value
    does not decrypt under the configured key.
    """
    doc = await tokens_collection().find_one(live_filter(token_id, utcnow()))
    if doc is None:
        raise NotFoundError(TOKEN_NOT_FOUND, resource=ENTITY, resource_id=token_id)
    authorize_token_read_value(user, doc["userId"])
    return as_stored(doc), decrypted_value(doc)


async def list_tokens(
    *,
    user: UserContext,
    api_type: ApiTokenType | None,
    identifier: str | None,
    owner_id: str | None,
    page: int,
    per_page: int,
    include_expired: bool = False,
) -> TokenPage:
    """The unexpired credentials the caller may list, newest first, without values.

    Users list their own; admins list everyone's or one user's (``owner_id``), and with
    ``include_expired`` also the records past ``expiresAt`` that MongoDB has not removed yet; a
    user naming someone else or asking for expired records raises PermissionDeniedError.
    ``identifier`` is a server name (or a stored ``mcp:...`` identifier) and matches every
    record type of that server unless ``api_type`` narrows it.
    """
    query: dict[str, Any] = token_owner_filter(
        user, user_id=owner_id, include_expired=include_expired
    )
    if not include_expired:
        query["expiresAt"] = {"$gt": utcnow()}
    if api_type is not None:
        kind = KIND_BY_API_TYPE[api_type]
        query["type"] = kind.stored_type
        if identifier is not None:
            query["identifier"] = kind.stored_identifier(server_name_from(identifier, kind))
    else:
        query["type"] = {"$in": list(STORED_TYPES)}
        if identifier is not None:
            query["identifier"] = {"$in": _identifiers_for_any_type(identifier)}
    collection = tokens_collection()
    total = await collection.count_documents(query)
    cursor = (
        collection.find(query, projection={"token": False})
        .sort([("createdAt", -1), ("_id", -1)])
        .skip((page - 1) * per_page)
        .limit(per_page)
    )
    docs = await cursor.to_list(length=per_page)
    return TokenPage(tokens=_listable(docs), total=total, page=page, per_page=per_page)


def _identifiers_for_any_type(identifier: str) -> list[str]:
    text = identifier.strip()
    if text.startswith("mcp:"):
        return [text]
    return stored_identifiers_for(server_name_from(text, ACCESS))


async def delete_token(*, user: UserContext, token_id: str) -> None:
    """Delete a credential record: its owner's or, for an admin, anyone's (expired ones too).

    Raises NotFoundError ("Token not found") for a malformed id or a record the caller may
    not manage.
    """
    oid = parse_token_id(token_id)
    if oid is None:
        raise NotFoundError("Token not found", resource=ENTITY, resource_id=token_id)
    query = {"_id": oid, "type": {"$in": list(STORED_TYPES)}, **token_owner_filter(user)}
    doc = await tokens_collection().find_one_and_delete(query, projection={"token": False})
    if doc is None:
        raise NotFoundError("Token not found", resource=ENTITY, resource_id=token_id)
    credential_changed(doc)  # at once after the write, whatever follows
    try:
        before = audit_view(as_stored(doc))
    except IncompatibleDocumentError:  # deleting a broken record is how it gets fixed
        before = {"user_id": str(doc.get("userId")), "type": doc.get("type")}
    await record_audit(
        action="delete", entity_type=ENTITY, entity_id=token_id, actor=user, before=before
    )
    log.info("token_deleted", token_id=token_id, owner_id=str(doc["userId"]))


def credential_changed(doc: dict[str, Any]) -> None:
    """Tell the gateway that the owner of the record ``doc`` has a new (or no) credential for
    its server, so it stops using a cached copy at once (``registry.gateway.credentials``).

    Reads only ``userId``, ``type`` and ``identifier``, so a record the external app broke
    otherwise still counts.
    """
    kind = KIND_BY_STORED_TYPE.get(str(doc.get("type")))
    identifier = doc.get("identifier")
    if kind is None or not isinstance(identifier, str):
        return
    server_name = api_identifier(identifier, kind)
    if server_name is not None:
        forget_user_credentials(user_id=str(doc.get("userId")), server_name=server_name)


def audit_view(token: StoredToken) -> dict[str, Any]:
    return {
        "user_id": token.user_id,
        "type": token.type,
        "identifier": token.stored_identifier,
        "expires_at": token.expires_at.isoformat(),
    }


@dataclass(frozen=True)
class UserCredential:
    """A user's decrypted credential for one server, for the gateway to inject upstream."""

    kind: ApiTokenType  # "oauth_access" or "api_key"
    value: str = field(repr=False)
    token_id: str
    expires_at: datetime


_GATEWAY_KINDS = (ACCESS, API_KEY)


async def find_user_credential(
    *,
    user_id: ObjectId,
    server_name: str,
    now: datetime,
    kinds: Collection[str] | None = None,
) -> UserCredential | None:
    """The user's usable credential for ``server_name``, or None.

    Prefers an unexpired OAuth access token (``mcp_oauth``, ``mcp:{server}``) over an API key
    (``mcp_api_key``, ``mcp:{server}:api_key``); newer records win within a kind. ``kinds``
    (API types, e.g. ``{"api_key"}``) restricts the search. Expired records are never
    returned. A record whose value does not decrypt is skipped (and logged), so a readable API
    key still serves when the OAuth record is unreadable.
    """
    wanted = [kind for kind in _GATEWAY_KINDS if kinds is None or kind.api_type in kinds]
    if not wanted:
        return None
    query = {
        "userId": user_id,
        "$or": [
            {"type": kind.stored_type, "identifier": kind.stored_identifier(server_name)}
            for kind in wanted
        ],
        "expiresAt": {"$gt": now},
    }
    docs = await tokens_collection().find(query).sort([("createdAt", -1), ("_id", -1)]).to_list()
    rank = {kind.stored_type: index for index, kind in enumerate(_GATEWAY_KINDS)}
    for doc in sorted(docs, key=lambda d: rank[str(d["type"])]):
        try:
            value = decrypted_value(doc)
        except UndecryptableTokenError:
            continue
        return UserCredential(
            kind=KIND_BY_STORED_TYPE[str(doc["type"])].api_type,
            value=value,
            token_id=str(doc["_id"]),
            expires_at=doc["expiresAt"],
        )
    return None
