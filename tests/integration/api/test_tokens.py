"""``/api/v1/tokens``: storing, reading, listing, refreshing and deleting users' credentials."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId, json_util
from httpx import AsyncClient

from packages.database.connection import MongoClient
from packages.database.encryption import EncryptionService
from registry.config import Settings
from tests.conftest import TEST_CREDS_IV, TEST_CREDS_KEY
from tests.factories import Caller, make_caller

TOKENS = "/api/v1/tokens"
SECRET = "gho_secret_access_value_0123456789"
ENCRYPTION = EncryptionService(key_hex=TEST_CREDS_KEY, iv_hex=TEST_CREDS_IV)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _in(hours: float) -> datetime:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0)


async def _store(
    client: AsyncClient,
    caller: Caller,
    *,
    token: str = SECRET,
    type_: str = "oauth_access",
    identifier: str = "github",
    expires_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "identifier": identifier, "token": token}
    body["expires_at"] = _iso(expires_at or _in(8))
    if metadata is not None:
        body["metadata"] = metadata
    response = await client.post(TOKENS, json=body, headers=caller.headers)
    assert response.status_code == 201, response.text
    assert token not in response.text
    created: dict[str, Any] = response.json()
    return created


async def _raw(mongo: MongoClient, settings: Settings, token_id: str) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = await mongo[settings.mongo_db]["tokens"].find_one(
        {"_id": ObjectId(token_id)}
    )
    return doc


def _assert_no_plaintext(doc: dict[str, Any] | None, *secrets: str) -> None:
    text = json_util.dumps(doc)
    for secret in secrets:
        assert secret not in text


async def test_create_token_stores_librechat_record(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    expires = _in(8)
    created = await _store(
        client, caller, expires_at=expires, metadata={"server_name": "github", "scope": "repo"}
    )

    assert created["type"] == "oauth_access"
    assert created["identifier"] == "github"
    assert created["stored_type"] == "mcp_oauth"
    assert created["stored_identifier"] == "mcp:github"
    assert created["user_id"] == caller.id
    assert created["expires_at"] == _iso(expires)
    assert created["metadata"] == {"server_name": "github", "scope": "repo"}
    assert "token" not in created
    raw = await _raw(mongo_client, settings, created["id"])
    assert raw is not None
    assert set(raw) == {
        "_id",
        "userId",
        "type",
        "identifier",
        "token",
        "createdAt",
        "expiresAt",
        "metadata",
        "__v",
    }
    assert raw["userId"] == ObjectId(caller.id)
    assert raw["type"] == "mcp_oauth"
    assert raw["identifier"] == "mcp:github"
    assert raw["expiresAt"] == expires
    assert raw["__v"] == 0
    assert ENCRYPTION.decrypt(raw["token"]) == SECRET
    _assert_no_plaintext(raw, SECRET)


async def test_create_token_with_prefixed_identifier_maps_each_type(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    cases = [
        ("oauth_access", "mcp:github", "mcp_oauth", "mcp:github"),
        ("oauth_refresh", "mcp:github:refresh", "mcp_oauth_refresh", "mcp:github:refresh"),
        ("oauth_client", "github", "mcp_oauth_client", "mcp:github:client"),
        ("api_key", "github", "mcp_api_key", "mcp:github:api_key"),
    ]
    for api_type, identifier, stored_type, stored_identifier in cases:
        created = await _store(client, caller, type_=api_type, identifier=identifier)
        assert created["identifier"] == "github"
        assert created["type"] == api_type
        raw = await _raw(mongo_client, settings, created["id"])
        assert raw is not None
        assert (raw["type"], raw["identifier"]) == (stored_type, stored_identifier)


async def test_create_token_twice_replaces_the_value(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    first = await _store(client, caller, token="first-value-aaaaaaaa")
    second = await _store(client, caller, token="second-value-bbbbbbb")

    assert second["id"] == first["id"]
    assert second["created_at"] == first["created_at"]
    docs = await mongo_client[settings.mongo_db]["tokens"].find({}).to_list()
    assert len(docs) == 1
    assert ENCRYPTION.decrypt(docs[0]["token"]) == "second-value-bbbbbbb"
    _assert_no_plaintext(docs[0], "first-value-aaaaaaaa", "second-value-bbbbbbb")


async def test_create_token_again_without_metadata_keeps_it(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    """Storing again without ``metadata`` erased it; LibreChat's update keeps it (its OAuth
    refresh reads the token endpoint from the client record's metadata)."""
    caller = make_caller(settings)
    meta = {"token_endpoint": "https://idp.example/token", "server_url": "https://x.example"}
    first = await _store(client, caller, type_="oauth_client", metadata=meta)

    kept = await _store(client, caller, type_="oauth_client", token="client-info-2")
    assert kept["metadata"] == meta
    cleared = await client.post(
        TOKENS,
        json={"type": "oauth_client", "identifier": "github", "token": "v3", "metadata": None},
        headers=caller.headers,
    )

    assert kept["id"] == first["id"]
    assert cleared.status_code == 201
    assert cleared.json()["metadata"] is None
    raw = await _raw(mongo_client, settings, first["id"])
    assert raw is not None and "metadata" not in raw


async def test_broken_shared_records_do_not_break_the_api(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    """Records the external app (or a bug) left without createdAt, with a non-text identifier
    or a text expiresAt answered 500 on get, list (the whole list) and delete."""
    owner = make_caller(settings)
    admin = make_caller(settings, role="admin")
    good = await _store(client, owner, identifier="good")
    later = datetime.now(UTC) + timedelta(hours=2)
    tokens = mongo_client[settings.mongo_db]["tokens"]
    base = {"userId": ObjectId(owner.id), "token": ENCRYPTION.encrypt("x"), "__v": 0}
    no_created = await tokens.insert_one(
        {**base, "type": "mcp_oauth", "identifier": "mcp:nodate", "expiresAt": later}
    )
    odd_identifier = await tokens.insert_one(
        {**base, "type": "mcp_api_key", "identifier": 42, "createdAt": later, "expiresAt": later}
    )
    text_expiry = await tokens.insert_one(
        {**base, "type": "mcp_oauth_refresh", "identifier": "mcp:t:refresh",
         "createdAt": later, "expiresAt": "tomorrow"}
    )  # fmt: skip

    mine = await client.get(TOKENS, headers=owner.headers)
    everyone = await client.get(TOKENS, params={"include_expired": "true"}, headers=admin.headers)
    dated = await client.get(f"{TOKENS}/{no_created.inserted_id}", headers=owner.headers)
    deleted = [
        await client.delete(f"{TOKENS}/{doc.inserted_id}", headers=owner.headers)
        for doc in (no_created, odd_identifier, text_expiry)
    ]

    assert mine.status_code == 200
    assert {item["id"] for item in mine.json()["tokens"]} == {
        good["id"],
        str(no_created.inserted_id),
        str(odd_identifier.inserted_id),
    }
    assert everyone.status_code == 200
    assert str(text_expiry.inserted_id) not in everyone.text  # unjudgeable expiry: skipped
    assert dated.status_code == 200
    created_at = datetime.fromisoformat(dated.json()["created_at"])
    assert created_at == no_created.inserted_id.generation_time
    assert [response.status_code for response in deleted] == [204, 204, 204]
    assert await tokens.count_documents({}) == 1


async def test_create_token_concurrently_keeps_one_record(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    """Simultaneous stores of one (user, type, server) never leave duplicate records."""
    caller = make_caller(settings)
    values = [f"{SECRET}-{index}" for index in range(12)]

    created = await asyncio.gather(*(_store(client, caller, token=value) for value in values))

    tokens = mongo_client[settings.mongo_db]["tokens"]
    docs = await tokens.find({"userId": ObjectId(caller.id), "type": "mcp_oauth"}).to_list()
    assert len(docs) == 1
    assert {record["id"] for record in created} == {str(docs[0]["_id"])}
    assert ENCRYPTION.decrypt(docs[0]["token"]) in values


async def test_create_token_expiry_in_past_is_rejected(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    body = {
        "type": "oauth_access",
        "identifier": "github",
        "token": SECRET,
        "expires_at": _iso(_in(-1)),
    }
    response = await client.post(TOKENS, json=body, headers=caller.headers)

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert SECRET not in response.text
    assert await mongo_client[settings.mongo_db]["tokens"].count_documents({}) == 0


async def test_create_token_invalid_input_is_rejected(
    client: AsyncClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    base = {"type": "oauth_access", "identifier": "github", "token": SECRET}
    bad_bodies: list[tuple[dict[str, Any], int]] = [
        ({**base, "type": "password"}, 422),
        ({**base, "user_id": str(ObjectId())}, 422),
        ({**base, "identifier": "mcp:a:b"}, 400),
        ({**base, "identifier": "g\u0000h"}, 400),  # was stored as mcp:g\x00h
        ({**base, "identifier": "two words"}, 400),
        ({**base, "expires_at": "2030-01-01T00:00:00"}, 422),  # no time zone
        ({**base, "metadata": {"$where": "x"}}, 422),
        ({**base, "metadata": {"a": {"b.c": 1}}}, 422),
        ({**base, "metadata": {"big": 2**64}}, 422),
    ]
    for body, status in bad_bodies:
        response = await client.post(TOKENS, json=body, headers=caller.headers)
        assert response.status_code == status, body
        assert SECRET not in response.text
    # A lone surrogate cannot be encrypted or stored: 422, not a server error.
    raw_bodies = [
        b'{"type": "oauth_access", "identifier": "github", "token": "\\ud800"}',
        b'{"type": "oauth_access", "identifier": "\\ud800", "token": "x"}',
        b'{"type": "api_key", "identifier": "a", "token": "x", "metadata": {"n": Infinity}}',
        b'{"type": "api_key", "identifier": "a", "token": "x",'
        b' "expires_at": "9999-12-31T23:59:59-12:00"}',
    ]
    for content in raw_bodies:
        response = await client.post(
            TOKENS,
            content=content,
            headers={**caller.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, content


async def test_create_token_without_expiry_defaults_to_eight_hours(
    client: AsyncClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    body = {"type": "oauth_access", "identifier": "github", "token": SECRET}
    before = datetime.now(UTC)
    response = await client.post(TOKENS, json=body, headers=caller.headers)

    assert response.status_code == 201
    expires = datetime.fromisoformat(response.json()["expires_at"])
    assert before + timedelta(hours=8) - timedelta(seconds=1) <= expires
    assert expires <= datetime.now(UTC) + timedelta(hours=8)


async def test_create_token_caller_without_object_id_is_forbidden(
    client: AsyncClient, settings: Settings
) -> None:
    caller = make_caller(settings, user_id="ci-bot")
    body = {"type": "api_key", "identifier": "github", "token": SECRET}
    response = await client.post(TOKENS, json=body, headers=caller.headers)

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "ObjectId" in response.json()["message"]


async def test_get_token_returns_decrypted_value_to_owner(
    client: AsyncClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    created = await _store(client, caller, metadata={"scope": "repo"})

    response = await client.get(f"{TOKENS}/{created['id']}", headers=caller.headers)

    assert response.status_code == 200
    body = response.json()
    assert body["token"] == SECRET
    assert body["id"] == created["id"]
    assert body["user_id"] == caller.id
    assert body["type"] == "oauth_access"
    assert body["identifier"] == "github"
    assert body["metadata"] == {"scope": "repo"}


async def test_get_token_other_user_admin_malformed_or_missing_is_not_found(
    client: AsyncClient, settings: Settings
) -> None:
    owner = make_caller(settings)
    other = make_caller(settings)
    admin = make_caller(settings, role="admin")
    created = await _store(client, owner)

    for caller, token_id in (
        (other, created["id"]),
        (admin, created["id"]),
        (owner, "not-an-id"),
        (owner, str(ObjectId())),
    ):
        response = await client.get(f"{TOKENS}/{token_id}", headers=caller.headers)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
        assert response.json()["message"] == "Token not found or expired"
        assert SECRET not in response.text


async def test_get_token_expired_is_not_found_at_once(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    created = await _store(client, caller)
    tokens = mongo_client[settings.mongo_db]["tokens"]
    past = datetime.now(UTC) - timedelta(seconds=1)
    await tokens.update_one({"_id": ObjectId(created["id"])}, {"$set": {"expiresAt": past}})

    response = await client.get(f"{TOKENS}/{created['id']}", headers=caller.headers)
    listed = await client.get(TOKENS, headers=caller.headers)

    assert response.status_code == 404
    assert response.json()["message"] == "Token not found or expired"
    assert listed.json()["tokens"] == []
    assert await tokens.count_documents({}) == 1  # the TTL monitor has not removed it yet


async def test_get_token_undecryptable_value_is_conflict(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    other_key = EncryptionService(key_hex="11" * 32, iv_hex=TEST_CREDS_IV)
    inserted = await mongo_client[settings.mongo_db]["tokens"].insert_one(
        {
            "userId": ObjectId(caller.id),
            "type": "mcp_oauth",
            "identifier": "mcp:github",
            "token": other_key.encrypt(SECRET),
            "createdAt": datetime.now(UTC),
            "expiresAt": _in(1),
            "__v": 0,
        }
    )

    response = await client.get(f"{TOKENS}/{inserted.inserted_id}", headers=caller.headers)

    assert response.status_code == 409
    assert response.json()["error"] == "undecryptable"
    assert response.json()["message"] == "Token value cannot be decrypted with the configured key"


async def test_list_tokens_never_returns_values(client: AsyncClient, settings: Settings) -> None:
    caller = make_caller(settings)
    other = make_caller(settings)
    await _store(client, caller, token="value-one-1111111")
    await _store(client, caller, token="value-two-2222222", type_="oauth_refresh")
    await _store(client, caller, token="value-three-33333", identifier="slack")
    await _store(client, other, token="value-other-44444")

    response = await client.get(TOKENS, headers=caller.headers)

    assert response.status_code == 200
    for secret in ("value-one-1111111", "value-two-2222222", "value-three-33333"):
        assert secret not in response.text
    body = response.json()
    assert body["pagination"] == {"total": 3, "page": 1, "per_page": 50, "total_pages": 1}
    assert {(t["type"], t["identifier"]) for t in body["tokens"]} == {
        ("oauth_access", "github"),
        ("oauth_refresh", "github"),
        ("oauth_access", "slack"),
    }
    assert all("token" not in t and t["user_id"] == caller.id for t in body["tokens"])


async def test_list_tokens_filters_and_paginates(client: AsyncClient, settings: Settings) -> None:
    caller = make_caller(settings)
    for name in ("a", "b", "c"):
        await _store(client, caller, identifier=name)
    await _store(client, caller, identifier="a", type_="api_key")

    by_type = await client.get(TOKENS, params={"type": "api_key"}, headers=caller.headers)
    by_server = await client.get(TOKENS, params={"identifier": "a"}, headers=caller.headers)
    exact = await client.get(
        TOKENS, params={"type": "oauth_access", "identifier": "mcp:a"}, headers=caller.headers
    )
    page2 = await client.get(TOKENS, params={"per_page": 3, "page": 2}, headers=caller.headers)
    too_big = await client.get(TOKENS, params={"per_page": 101}, headers=caller.headers)

    assert [t["identifier"] for t in by_type.json()["tokens"]] == ["a"]
    assert {t["type"] for t in by_server.json()["tokens"]} == {"oauth_access", "api_key"}
    assert [t["stored_identifier"] for t in exact.json()["tokens"]] == ["mcp:a"]
    assert page2.json()["pagination"] == {"total": 4, "page": 2, "per_page": 3, "total_pages": 2}
    assert len(page2.json()["tokens"]) == 1
    assert too_big.status_code == 422


async def test_list_tokens_admin_lists_any_user_without_values(
    client: AsyncClient, settings: Settings
) -> None:
    alice = make_caller(settings)
    bob = make_caller(settings)
    admin = make_caller(settings, role="admin")
    await _store(client, alice, token="alice-secret-value-1")
    await _store(client, bob, token="bob-secret-value-22")

    only_alice = await client.get(TOKENS, params={"user_id": alice.id}, headers=admin.headers)
    everyone = await client.get(TOKENS, headers=admin.headers)
    user_asks_for_other = await client.get(
        TOKENS, params={"user_id": alice.id}, headers=bob.headers
    )

    assert only_alice.status_code == 200
    assert [t["user_id"] for t in only_alice.json()["tokens"]] == [alice.id]
    assert {t["user_id"] for t in everyone.json()["tokens"]} == {alice.id, bob.id}
    for response in (only_alice, everyone):
        assert "alice-secret-value-1" not in response.text
        assert "bob-secret-value-22" not in response.text
    assert user_asks_for_other.status_code == 403


async def test_list_tokens_include_expired_is_for_admins_only(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    alice = make_caller(settings)
    admin = make_caller(settings, role="admin")
    created = await _store(client, alice, token="alice-expired-value-1")
    past = datetime.now(UTC) - timedelta(minutes=1)
    await mongo_client[settings.mongo_db]["tokens"].update_one(
        {"_id": ObjectId(created["id"])}, {"$set": {"expiresAt": past}}
    )
    expired_too = {"include_expired": "true"}

    default = await client.get(TOKENS, headers=admin.headers)
    admin_expired = await client.get(TOKENS, params=expired_too, headers=admin.headers)
    user_expired = await client.get(TOKENS, params=expired_too, headers=alice.headers)

    assert default.json()["tokens"] == []
    assert [token["id"] for token in admin_expired.json()["tokens"]] == [created["id"]]
    assert admin_expired.json()["pagination"]["total"] == 1
    assert "alice-expired-value-1" not in admin_expired.text
    assert user_expired.status_code == 403
    assert user_expired.json()["message"] == "Only admins can list expired tokens"


async def test_list_tokens_hides_external_app_records(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    # LibreChat's e-mail verification record of the same user: not a credential of ours.
    await mongo_client[settings.mongo_db]["tokens"].insert_one(
        {
            "userId": ObjectId(caller.id),
            "email": "user@example.com",
            "token": "$2a$10$hashhashhash",
            "createdAt": datetime.now(UTC),
            "expiresAt": _in(1),
        }
    )

    response = await client.get(TOKENS, headers=caller.headers)

    assert response.json()["tokens"] == []


async def test_delete_token_by_owner_and_admin(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    owner = make_caller(settings)
    admin = make_caller(settings, role="admin")
    first = await _store(client, owner, identifier="one")
    second = await _store(client, owner, identifier="two")

    by_owner = await client.delete(f"{TOKENS}/{first['id']}", headers=owner.headers)
    by_admin = await client.delete(f"{TOKENS}/{second['id']}", headers=admin.headers)
    again = await client.delete(f"{TOKENS}/{first['id']}", headers=owner.headers)

    assert (by_owner.status_code, by_admin.status_code) == (204, 204)
    assert by_owner.content == b""
    assert again.status_code == 404
    assert again.json()["message"] == "Token not found"
    assert await mongo_client[settings.mongo_db]["tokens"].count_documents({}) == 0


async def test_other_user_cannot_read_refresh_or_delete(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    alice = make_caller(settings)
    bob = make_caller(settings)
    created = await _store(client, alice)
    url = f"{TOKENS}/{created['id']}"
    refresh_body = {"new_access_token": "stolen-value-xxxx", "new_expires_at": _iso(_in(2))}

    read = await client.get(url, headers=bob.headers)
    refreshed = await client.put(f"{url}/refresh", json=refresh_body, headers=bob.headers)
    deleted = await client.delete(url, headers=bob.headers)

    assert [r.status_code for r in (read, refreshed, deleted)] == [404, 404, 404]
    raw = await _raw(mongo_client, settings, created["id"])
    assert raw is not None
    assert ENCRYPTION.decrypt(raw["token"]) == SECRET


async def test_refresh_token_replaces_access_and_refresh_values(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    access = await _store(client, caller, token="old-access-value-1")
    refresh = await _store(client, caller, token="old-refresh-value-1", type_="oauth_refresh")
    new_expiry = _in(2)
    body = {
        "new_access_token": "new-access-value-2",
        "new_expires_at": _iso(new_expiry),
        "new_refresh_token": "new-refresh-value-2",
    }

    response = await client.put(
        f"{TOKENS}/{access['id']}/refresh", json=body, headers=caller.headers
    )

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["id"] == access["id"]
    assert result["type"] == "oauth_access"
    assert result["identifier"] == "github"
    assert result["token"] == "new-access-value-2"
    assert result["expires_at"] == _iso(new_expiry)
    assert result["refresh_token_id"] == refresh["id"]
    raw_access = await _raw(mongo_client, settings, access["id"])
    raw_refresh = await _raw(mongo_client, settings, refresh["id"])
    assert raw_access is not None and raw_refresh is not None
    assert ENCRYPTION.decrypt(raw_access["token"]) == "new-access-value-2"
    assert raw_access["expiresAt"] == new_expiry
    assert ENCRYPTION.decrypt(raw_refresh["token"]) == "new-refresh-value-2"
    db = mongo_client[settings.mongo_db]
    everything = json_util.dumps(await db["tokens"].find({}).to_list())
    everything += json_util.dumps(await db["audit_logs"].find({}).to_list())
    for secret in ("old-access-value-1", "old-refresh-value-1", "new-access-value-2"):
        assert secret not in everything
    old_ciphertexts = {raw_access["token"], raw_refresh["token"]}
    assert len(old_ciphertexts) == 2


async def test_refresh_token_creates_missing_refresh_record(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    access = await _store(client, caller, identifier="slack")
    body = {
        "new_access_token": "new-access-value-3",
        "new_expires_at": _iso(_in(1)),
        "new_refresh_token": "new-refresh-value-3",
    }

    response = await client.put(
        f"{TOKENS}/{access['id']}/refresh", json=body, headers=caller.headers
    )

    assert response.status_code == 200
    refresh_id = response.json()["refresh_token_id"]
    raw = await _raw(mongo_client, settings, refresh_id)
    assert raw is not None
    assert set(raw) == {
        "_id",
        "userId",
        "type",
        "identifier",
        "token",
        "createdAt",
        "expiresAt",
        "__v",
    }
    assert (raw["userId"], raw["type"], raw["identifier"], raw["__v"]) == (
        ObjectId(caller.id),
        "mcp_oauth_refresh",
        "mcp:slack:refresh",
        0,
    )
    assert ENCRYPTION.decrypt(raw["token"]) == "new-refresh-value-3"


async def test_refresh_token_rejects_non_access_and_expired(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    api_key = await _store(client, caller, type_="api_key")
    access = await _store(client, caller)
    await mongo_client[settings.mongo_db]["tokens"].update_one(
        {"_id": ObjectId(access["id"])},
        {"$set": {"expiresAt": datetime.now(UTC) - timedelta(seconds=1)}},
    )
    body = {"new_access_token": "x" * 10, "new_expires_at": _iso(_in(1))}

    not_access = await client.put(
        f"{TOKENS}/{api_key['id']}/refresh", json=body, headers=caller.headers
    )
    expired = await client.put(
        f"{TOKENS}/{access['id']}/refresh", json=body, headers=caller.headers
    )
    past = await client.put(
        f"{TOKENS}/{access['id']}/refresh",
        json={**body, "new_expires_at": _iso(_in(-1))},
        headers=caller.headers,
    )

    assert not_access.status_code == 400
    assert expired.status_code == 404
    assert past.status_code == 422


async def test_token_writes_are_audited_without_values(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    created = await _store(client, caller, token="audited-value-1111")
    await client.put(
        f"{TOKENS}/{created['id']}/refresh",
        json={
            "new_access_token": "audited-value-2222",
            "new_expires_at": _iso(_in(1)),
            "new_refresh_token": "audited-value-3333",
        },
        headers=caller.headers,
    )
    await client.delete(f"{TOKENS}/{created['id']}", headers=caller.headers)

    entries = await mongo_client[settings.mongo_db]["audit_logs"].find({}).to_list()

    assert [(e["action"], e["entity_type"]) for e in entries] == [
        ("create", "token"),
        ("refresh", "token"),
        ("delete", "token"),
    ]
    assert {e["entity_id"] for e in entries} == {ObjectId(created["id"])}
    text = json_util.dumps(entries)
    for secret in ("audited-value-1111", "audited-value-2222", "audited-value-3333"):
        assert secret not in text


async def test_tokens_require_authentication(client: AsyncClient) -> None:
    responses = [
        await client.get(TOKENS),
        await client.post(TOKENS, json={}),
        await client.get(f"{TOKENS}/{ObjectId()}"),
        await client.delete(f"{TOKENS}/{ObjectId()}"),
        await client.post(f"{TOKENS}/generate", json={}),
    ]
    assert [r.status_code for r in responses] == [401] * 5


async def test_refresh_token_concurrent_refreshes_leave_a_matching_pair(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    """Access and refresh values are written in one transaction: the pair never mixes."""
    caller = make_caller(settings)
    access = await _store(client, caller)
    url = f"{TOKENS}/{access['id']}/refresh"

    async def refresh(index: int) -> int:
        body = {
            "new_access_token": f"access-{index:02d}-value",
            "new_expires_at": _iso(_in(2)),
            "new_refresh_token": f"refresh-{index:02d}-value",
        }
        response = await client.put(url, json=body, headers=caller.headers)
        return response.status_code

    statuses = await asyncio.gather(*(refresh(index) for index in range(10)))

    assert statuses == [200] * 10
    docs = await mongo_client[settings.mongo_db]["tokens"].find({}).to_list()
    by_type = {doc["type"]: ENCRYPTION.decrypt(doc["token"]) for doc in docs}
    assert len(docs) == 2
    assert by_type["mcp_oauth"].removeprefix("access-") == by_type[
        "mcp_oauth_refresh"
    ].removeprefix("refresh-")
