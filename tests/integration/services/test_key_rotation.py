"""Key rotation: every secret moves from the current CREDS_KEY to the new one, resumably."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from packages.database.connection import MongoClient
from packages.database.encryption import EncryptionService
from registry.bootstrap import ConfigurationError
from registry.cli import build_parser
from registry.commands.rotate_creds import run_rotation
from registry.config import Settings
from registry.services.key_rotation import decide, rotate_credentials
from tests.conftest import TEST_CREDS_IV, TEST_CREDS_KEY

NEW_KEY = "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b" + "0123456789abcdef"
NEW_IV = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
OLD = EncryptionService(key_hex=TEST_CREDS_KEY, iv_hex=TEST_CREDS_IV)
NEW = EncryptionService(key_hex=NEW_KEY, iv_hex=NEW_IV)
STRANGER = EncryptionService(key_hex="22" * 32, iv_hex=TEST_CREDS_IV)

Secrets = dict[tuple[str, str, str], str]  # (collection, id, field) -> plaintext


def _server(name: str, *, api_key: str | None, client_secret: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"type": "sse", "url": f"http://127.0.0.1:1/{name}", "title": name}
    if api_key is not None:
        config["apiKey"] = {"key": api_key, "source": "admin", "authorization_type": "bearer"}
    if client_secret is not None:
        config["oauth"] = {"client_id": "cid", "client_secret": client_secret}
    return {"serverName": name, "config": config, "author": ObjectId(), "path": f"/mcp/{name}"}


def _token(kind: str, ciphertext: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "userId": ObjectId(),
        "type": kind,
        "identifier": "mcp:github",
        "token": ciphertext,
        "createdAt": now,
        "expiresAt": now + timedelta(hours=1),
        "__v": 0,
    }


async def _seed(db: AsyncDatabase[dict[str, Any]], *, servers: int, tokens: int) -> Secrets:
    """Servers with two secrets each and MCP tokens, in every format the old key reads."""
    secrets: Secrets = {}
    encoders = (OLD.encrypt, OLD.encrypt_v1, OLD.encrypt_v3)
    for index in range(servers):
        api_key, client_secret = f"api-key-{index:04d}-x", f"client-secret-{index:04d}"
        encode = encoders[index % 3]
        result = await db["mcpservers"].insert_one(
            _server(f"s{index}", api_key=encode(api_key), client_secret=encode(client_secret))
        )
        secrets[("mcpservers", str(result.inserted_id), "config.apiKey.key")] = api_key
        secrets[("mcpservers", str(result.inserted_id), "config.oauth.client_secret")] = (
            client_secret
        )
    kinds = ("mcp_oauth", "mcp_oauth_refresh", "mcp_oauth_client", "mcp_api_key", "oauth")
    for index in range(tokens):
        value = f"token-value-{index:04d}-y"
        result = await db["tokens"].insert_one(
            _token(kinds[index % len(kinds)], OLD.encrypt(value))
        )
        secrets[("tokens", str(result.inserted_id), "token")] = value
    return secrets


async def _stored_values(db: AsyncDatabase[dict[str, Any]], secrets: Secrets) -> dict[Any, str]:
    values: dict[Any, str] = {}
    for collection, doc_id, field in secrets:
        doc = await db[collection].find_one({"_id": ObjectId(doc_id)})
        assert doc is not None
        value: Any = doc
        for part in field.split("."):
            value = value[part]
        values[(collection, doc_id, field)] = value
    return values


async def test_rotate_credentials_interrupted_then_resumed(
    mongo_client: MongoClient, db_name: str
) -> None:
    db = mongo_client[db_name]
    secrets = await _seed(db, servers=7, tokens=11)
    total = len(secrets)  # 14 server secrets + 11 tokens

    first = await rotate_credentials(database=db, old=OLD, new=NEW, batch_size=3, max_values=10)
    second = await rotate_credentials(database=db, old=OLD, new=NEW, batch_size=3)
    third = await rotate_credentials(database=db, old=OLD, new=NEW, batch_size=3)

    assert first.complete is False
    assert first.collections["mcpservers"].rotated == 10
    assert second.complete is True
    assert second.collections["mcpservers"].rotated == 4
    assert second.collections["mcpservers"].already_rotated == 10
    assert second.collections["tokens"].rotated == 11
    assert (
        sum(c.rotated for c in first.collections.values())
        + sum(c.rotated for c in second.collections.values())
        == total
    )
    assert third.collections["mcpservers"].rotated == third.collections["tokens"].rotated == 0
    assert third.collections["mcpservers"].already_rotated == 14
    assert third.collections["tokens"].already_rotated == 11
    stored = await _stored_values(db, secrets)
    for key, plaintext in secrets.items():
        assert NEW.decrypt(stored[key]) == plaintext, key
        assert not OLD.is_encrypted(stored[key]), key
        assert ":" in stored[key] and not stored[key].startswith("v3:")  # written as v2


async def test_rotate_credentials_reports_undecryptable_and_leaves_them(
    mongo_client: MongoClient, db_name: str
) -> None:
    db = mongo_client[db_name]
    secrets = await _seed(db, servers=1, tokens=1)
    foreign = STRANGER.encrypt("someone-elses-secret")
    bad_token = await db["tokens"].insert_one(_token("mcp_oauth", foreign))
    plain_server = await db["mcpservers"].insert_one(
        _server("plain", api_key="plaintext-key-not-encrypted", client_secret=None)
    )
    # An e-mail verification record holds a hash, not a ciphertext: never touched or reported.
    hashed = await db["tokens"].insert_one(
        {"userId": ObjectId(), "token": "$2a$10$abcdefghij", "createdAt": datetime.now(UTC),
         "expiresAt": datetime.now(UTC) + timedelta(hours=1)}
    )  # fmt: skip

    report = await rotate_credentials(database=db, old=OLD, new=NEW)

    assert report.complete is True
    assert report.collections["tokens"].undecryptable == 1
    assert report.collections["mcpservers"].undecryptable == 1
    assert {(u.collection, u.document_id, u.field) for u in report.undecryptable} == {
        ("tokens", str(bad_token.inserted_id), "token"),
        ("mcpservers", str(plain_server.inserted_id), "config.apiKey.key"),
    }
    assert all(
        "someone" not in u.reason and "plaintext" not in u.reason for u in report.undecryptable
    )
    left = await db["tokens"].find_one({"_id": bad_token.inserted_id})
    plain = await db["mcpservers"].find_one({"_id": plain_server.inserted_id})
    untouched = await db["tokens"].find_one({"_id": hashed.inserted_id})
    assert left is not None and left["token"] == foreign
    assert plain is not None and plain["config"]["apiKey"]["key"] == "plaintext-key-not-encrypted"
    assert untouched is not None and untouched["token"] == "$2a$10$abcdefghij"
    stored = await _stored_values(db, secrets)
    assert all(NEW.decrypt(stored[key]) == value for key, value in secrets.items())


async def test_rotate_credentials_dry_run_writes_nothing(
    mongo_client: MongoClient, db_name: str
) -> None:
    db = mongo_client[db_name]
    secrets = await _seed(db, servers=2, tokens=3)
    before = await _stored_values(db, secrets)

    report = await rotate_credentials(database=db, old=OLD, new=NEW, dry_run=True, batch_size=2)

    assert report.dry_run is True
    assert report.collections["mcpservers"].rotated == 4
    assert report.collections["tokens"].rotated == 3
    assert await _stored_values(db, secrets) == before


async def test_rotate_credentials_skips_value_changed_concurrently(
    mongo_client: MongoClient, db_name: str
) -> None:
    """The write is conditional on the old ciphertext: a concurrent writer always wins."""
    db = mongo_client[db_name]
    await _seed(db, servers=0, tokens=1)
    doc = await db["tokens"].find_one({})
    assert doc is not None
    decision, plaintext = decide(doc["token"], old=OLD, new=NEW)
    concurrent = OLD.encrypt("written-by-the-external-app")
    await db["tokens"].update_one({"_id": doc["_id"]}, {"$set": {"token": concurrent}})
    # The rotation's conditional update, as it would run after reading the old value.
    result = await db["tokens"].update_one(
        {"_id": doc["_id"], "token": doc["token"]}, {"$set": {"token": NEW.encrypt(plaintext)}}
    )

    assert decision == "rotate"
    assert result.matched_count == 0
    stored = await db["tokens"].find_one({"_id": doc["_id"]})
    assert stored is not None and stored["token"] == concurrent


def test_decide_classifies_each_format() -> None:
    assert decide(OLD.encrypt("a-secret"), old=OLD, new=NEW) == ("rotate", "a-secret")
    assert decide(OLD.encrypt_v1("a-secret"), old=OLD, new=NEW) == ("rotate", "a-secret")
    assert decide(OLD.encrypt_v3("a-secret"), old=OLD, new=NEW) == ("rotate", "a-secret")
    assert decide(NEW.encrypt("a-secret"), old=OLD, new=NEW) == ("already_rotated", "")
    assert decide(STRANGER.encrypt("a-secret"), old=OLD, new=NEW)[0] == "undecryptable"
    assert decide("not-encrypted", old=OLD, new=NEW)[0] == "undecryptable"


async def test_rotate_credentials_same_key_is_refused(
    mongo_client: MongoClient, db_name: str
) -> None:
    with pytest.raises(ValueError, match="the new key is the current key"):
        await rotate_credentials(database=mongo_client[db_name], old=OLD, new=OLD)


async def test_run_rotation_command_reports_json(
    mongo_client: MongoClient, settings: Settings
) -> None:
    db = mongo_client[settings.mongo_db]
    secrets = await _seed(db, servers=1, tokens=2)
    out = io.StringIO()

    dry = await run_rotation(
        settings=settings, new_key_hex=NEW_KEY, new_iv_hex=None, dry_run=True, batch_size=10,
        out=out,
    )  # fmt: skip
    dry_report = json.loads(out.getvalue())
    out = io.StringIO()
    real = await run_rotation(
        settings=settings, new_key_hex=NEW_KEY.upper(), new_iv_hex=NEW_IV, dry_run=False,
        batch_size=10, out=out,
    )  # fmt: skip
    report = json.loads(out.getvalue())

    assert (dry, real) == (0, 0)
    assert dry_report["dry_run"] is True
    assert report == {
        "dry_run": False,
        "complete": True,
        "collections": {
            "mcpservers": {"rotated": 2, "already_rotated": 0, "undecryptable": 0,
                           "changed_concurrently": 0},
            "tokens": {"rotated": 2, "already_rotated": 0, "undecryptable": 0,
                       "changed_concurrently": 0},
        },
        "undecryptable": [],
    }  # fmt: skip
    stored = await _stored_values(db, secrets)
    assert all(NEW.decrypt(stored[key]) == value for key, value in secrets.items())
    assert NEW_KEY not in out.getvalue()


class _StopAfterChecks(asyncio.Event):
    """A stop request that arrives after ``checks`` batches (the run checks once per batch)."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.left = checks

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0


async def test_rotate_credentials_stop_request_ends_after_a_whole_batch(
    mongo_client: MongoClient, db_name: str
) -> None:
    db = mongo_client[db_name]
    secrets = await _seed(db, servers=5, tokens=0)

    stopped = await rotate_credentials(
        database=db, old=OLD, new=NEW, batch_size=2, stop=_StopAfterChecks(2)
    )
    resumed = await rotate_credentials(database=db, old=OLD, new=NEW, batch_size=2)

    assert stopped.complete is False
    assert stopped.collections["mcpservers"].rotated == 8  # two batches of two servers
    assert resumed.complete is True
    assert resumed.collections["mcpservers"].rotated == 2
    assert resumed.collections["mcpservers"].already_rotated == 8
    stored = await _stored_values(db, secrets)
    assert all(NEW.decrypt(stored[key]) == value for key, value in secrets.items())


async def test_run_rotation_ctrl_c_stops_cleanly_with_a_report(
    mongo_client: MongoClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C ended the command with a KeyboardInterrupt traceback and no counts."""
    db = mongo_client[settings.mongo_db]
    await _seed(db, servers=2, tokens=2)
    out = io.StringIO()
    # Delivered at the command's first wait, after it has taken over SIGINT.
    asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGINT)

    status = await run_rotation(
        settings=settings, new_key_hex=NEW_KEY, new_iv_hex=None, dry_run=False, batch_size=10,
        out=out,
    )  # fmt: skip

    report = json.loads(out.getvalue())
    assert status == 1
    assert report["complete"] is False
    assert "run the same command again" in capsys.readouterr().err
    again = await run_rotation(
        settings=settings, new_key_hex=NEW_KEY, new_iv_hex=None, dry_run=False, batch_size=10,
        out=io.StringIO(),
    )  # fmt: skip
    assert again == 0


def test_rotate_creds_is_registered_in_cli() -> None:
    args = build_parser().parse_args(
        ["rotate-creds", "--new-key", NEW_KEY, "--dry-run", "--batch-size", "5"]
    )

    assert (args.new_key, args.new_iv, args.dry_run, args.batch_size) == (NEW_KEY, None, True, 5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rotate-creds", "--new-key", NEW_KEY, "--batch-size", "0"])


async def test_run_rotation_malformed_new_key_is_refused_before_connecting(
    settings: Settings,
) -> None:
    with pytest.raises(ConfigurationError, match="--new-key must be 64 hexadecimal"):
        await run_rotation(
            settings=settings, new_key_hex="zz", new_iv_hex=None, dry_run=True, batch_size=1,
            out=io.StringIO(),
        )  # fmt: skip
    with pytest.raises(ConfigurationError, match="--new-iv must be 32 hexadecimal"):
        await run_rotation(
            settings=settings, new_key_hex=NEW_KEY, new_iv_hex="00", dry_run=True, batch_size=1,
            out=io.StringIO(),
        )  # fmt: skip
