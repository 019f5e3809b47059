"""Records shared with the external app (LibreChat): each app reads what the other writes.

The reference is the published example ``token-mcp-oauth-access.json`` (written by the external
app, encrypted with encryptV2 under the NIST test key the suite uses) and the interop vectors.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from httpx import AsyncClient

from packages.database.connection import MongoClient
from registry.config import Settings
from registry.services.token_stats import token_statistics
from registry.services.tokens import find_user_credential
from tests.conftest import FIXTURES, TEST_CREDS_KEY
from tests.factories import make_caller

TOKENS = "/api/v1/tokens"
EXAMPLE_PLAINTEXT = "gho_example_access_token_0123456789"
VECTORS = FIXTURES / "interop" / "librechat-crypto-vectors.json"


def _example(version: str = "v0.0.31") -> dict[str, Any]:
    path = FIXTURES / "jarvis-schemas" / "examples" / version / "token-mcp-oauth-access.json"
    raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return raw


def _as_stored(example: dict[str, Any]) -> dict[str, Any]:
    """The example as MongoDB holds it (ObjectIds and dates, not their JSON spellings)."""
    doc = dict(example)
    doc["_id"] = ObjectId(doc["_id"])
    doc["userId"] = ObjectId(doc["userId"])
    for name in ("createdAt", "expiresAt"):
        doc[name] = datetime.fromisoformat(doc[name].replace("Z", "+00:00"))
    return doc


def _decrypt_v2(value: str, key_hex: str) -> str:
    """LibreChat's decryptV2, written from its algorithm (AES-256-CBC, PKCS7, iv:ct hex)."""
    iv_hex, ct_hex = value.split(":", 1)
    decryptor = Cipher(
        algorithms.AES(bytes.fromhex(key_hex)), modes.CBC(bytes.fromhex(iv_hex))
    ).decryptor()
    padded = decryptor.update(bytes.fromhex(ct_hex)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")


def test_decrypt_v2_reference_matches_interop_vectors() -> None:
    vectors = [v for v in json.loads(VECTORS.read_text("utf-8")) if v["function"] == "encryptV2"]
    assert vectors
    for vector in vectors:
        assert _decrypt_v2(vector["ciphertext"], vector["key_hex"]) == vector["plaintext"]
    assert _decrypt_v2(_example()["token"], TEST_CREDS_KEY) == EXAMPLE_PLAINTEXT


@pytest.mark.parametrize("version", ["v0.0.31", "v0.0.32"])
async def test_get_token_written_by_external_app(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings, version: str
) -> None:
    doc = _as_stored(_example(version))
    # The example expired on its own date; move it into the future to read it.
    doc["expiresAt"] = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    await mongo_client[settings.mongo_db]["tokens"].insert_one(doc)
    owner = make_caller(settings, user_id=str(doc["userId"]))

    got = await client.get(f"{TOKENS}/{doc['_id']}", headers=owner.headers)
    listed = await client.get(TOKENS, params={"identifier": "github"}, headers=owner.headers)

    assert got.status_code == 200
    body = got.json()
    assert body["token"] == EXAMPLE_PLAINTEXT
    assert body["type"] == "oauth_access"
    assert body["identifier"] == "github"
    assert body["stored_type"] == "mcp_oauth"
    assert body["stored_identifier"] == "mcp:github"
    assert body["user_id"] == str(doc["userId"])
    assert body["metadata"] == doc["metadata"]
    assert [t["id"] for t in listed.json()["tokens"]] == [str(doc["_id"])]
    assert EXAMPLE_PLAINTEXT not in listed.text


async def test_get_token_written_by_external_app_expired_is_not_found(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    doc = _as_stored(_example())
    doc["expiresAt"] = datetime.now(UTC) - timedelta(minutes=1)
    await mongo_client[settings.mongo_db]["tokens"].insert_one(doc)
    owner = make_caller(settings, user_id=str(doc["userId"]))

    response = await client.get(f"{TOKENS}/{doc['_id']}", headers=owner.headers)

    assert response.status_code == 404


async def test_create_token_matches_external_app_record_field_by_field(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    reference = _as_stored(_example())
    owner = make_caller(settings)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=8)
    response = await client.post(
        TOKENS,
        json={
            "type": "oauth_access",
            "identifier": "github",
            "token": EXAMPLE_PLAINTEXT,
            "expires_at": expires.isoformat(),
            "metadata": reference["metadata"],
        },
        headers=owner.headers,
    )
    assert response.status_code == 201

    ours = await mongo_client[settings.mongo_db]["tokens"].find_one(
        {"_id": ObjectId(response.json()["id"])}
    )

    assert ours is not None
    assert list(sorted(ours)) == sorted(reference)
    for name, value in reference.items():
        assert type(ours[name]) is type(value), name
    assert ours["type"] == reference["type"] == "mcp_oauth"
    assert ours["identifier"] == reference["identifier"] == "mcp:github"
    assert ours["metadata"] == reference["metadata"]
    assert ours["__v"] == reference["__v"] == 0
    assert ours["userId"] == ObjectId(owner.id)
    assert ours["expiresAt"] == expires
    assert ours["createdAt"].tzinfo is not None
    iv_hex, ct_hex = ours["token"].split(":")
    assert len(iv_hex) == 32 and len(ct_hex) % 32 == 0
    assert ours["token"] != reference["token"]  # a fresh random IV per value
    assert _decrypt_v2(ours["token"], TEST_CREDS_KEY) == EXAMPLE_PLAINTEXT


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_create_token_value_decrypts_with_node_crypto(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings, tmp_path: Path
) -> None:
    """The external app is a Node app: decrypt our record with Node's own crypto module."""
    owner = make_caller(settings)
    response = await client.post(
        TOKENS,
        json={"type": "oauth_access", "identifier": "github", "token": EXAMPLE_PLAINTEXT},
        headers=owner.headers,
    )
    ours = await mongo_client[settings.mongo_db]["tokens"].find_one(
        {"_id": ObjectId(response.json()["id"])}
    )
    assert ours is not None
    script = tmp_path / "decrypt.js"
    # LibreChat's decryptV2: split "iv:ct", aes-256-cbc with CREDS_KEY, utf8 output.
    script.write_text(
        "const crypto = require('crypto');\n"
        "const [key, value] = process.argv.slice(2);\n"
        "const parts = value.split(':');\n"
        "const iv = Buffer.from(parts.shift(), 'hex');\n"
        "const d = crypto.createDecipheriv('aes-256-cbc', Buffer.from(key, 'hex'), iv);\n"
        "process.stdout.write(d.update(parts.join(':'), 'hex', 'utf8') + d.final('utf8'));\n",
        encoding="utf-8",
    )
    node = shutil.which("node")
    assert node is not None
    process = await asyncio.create_subprocess_exec(
        node,
        str(script),
        TEST_CREDS_KEY,
        ours["token"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0
    assert stdout.decode("utf-8") == EXAMPLE_PLAINTEXT


async def test_find_user_credential_prefers_valid_oauth_then_api_key(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    owner = make_caller(settings)
    now = datetime.now(UTC)
    for type_, value in (("api_key", "api-key-value-123"), ("oauth_access", "oauth-value-456")):
        response = await client.post(
            TOKENS,
            json={"type": type_, "identifier": "github", "token": value},
            headers=owner.headers,
        )
        assert response.status_code == 201
    oid = ObjectId(owner.id)

    preferred = await find_user_credential(user_id=oid, server_name="github", now=now)
    await mongo_client[settings.mongo_db]["tokens"].update_one(
        {"type": "mcp_oauth"}, {"$set": {"expiresAt": now - timedelta(seconds=1)}}
    )
    fallback = await find_user_credential(user_id=oid, server_name="github", now=now)
    other_server = await find_user_credential(user_id=oid, server_name="slack", now=now)
    other_user = await find_user_credential(user_id=ObjectId(), server_name="github", now=now)

    assert preferred is not None and fallback is not None
    assert (preferred.kind, preferred.value) == ("oauth_access", "oauth-value-456")
    assert (fallback.kind, fallback.value) == ("api_key", "api-key-value-123")
    assert "api-key-value-123" not in repr(fallback)
    assert other_server is None and other_user is None


async def test_find_user_credential_never_returns_expired(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    owner = make_caller(settings)
    await client.post(
        TOKENS,
        json={"type": "oauth_access", "identifier": "github", "token": "value-expiring-1"},
        headers=owner.headers,
    )
    later = datetime.now(UTC) + timedelta(hours=9)

    found = await find_user_credential(user_id=ObjectId(owner.id), server_name="github", now=later)

    assert found is None


async def test_stats_token_figures_follow_stored_tokens(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    alice = make_caller(settings)
    bob = make_caller(settings)
    admin = make_caller(settings, role="admin")
    for caller, type_ in ((alice, "oauth_access"), (alice, "oauth_refresh"), (bob, "api_key")):
        response = await client.post(
            TOKENS,
            json={"type": type_, "identifier": "github", "token": "stats-value-000"},
            headers=caller.headers,
        )
        assert response.status_code == 201
    await mongo_client[settings.mongo_db]["tokens"].update_one(
        {"type": "mcp_api_key"}, {"$set": {"expiresAt": datetime.now(UTC) - timedelta(seconds=1)}}
    )

    response = await client.get("/api/v1/servers/stats", headers=admin.headers)
    direct = await token_statistics()

    assert response.status_code == 200
    body = response.json()
    assert body["total_tokens"] == 3
    assert body["tokens_by_type"] == {"oauth_access": 1, "oauth_refresh": 1, "api_key": 1}
    assert (body["active_tokens"], body["expired_tokens"]) == (2, 1)
    assert direct.tokens_by_type == {"oauth_access": 1, "oauth_refresh": 1, "api_key": 1}
