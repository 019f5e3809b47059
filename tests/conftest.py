"""Shared fixtures: a real MongoDB-wire server per session, a fresh database per test.

``MONGO_URI`` in the environment points the whole suite at a real MongoDB instead of the
embedded SecantusDB server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from packages.database.connection import MongoClient, create_client
from packages.database.embedded import EmbeddedMongo
from registry.config import Settings

pytest_plugins = ["tests.support.fixtures"]

FIXTURES = Path(__file__).parent / "fixtures"

# The NIST SP 800-38A AES-256 test key, also used by the external app's example documents.
TEST_CREDS_KEY = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
TEST_CREDS_IV = "000102030405060708090a0b0c0d0e0f"
TEST_JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789abcdef"

_EXTERNAL_MONGO_URI = os.environ.get("MONGO_URI")
_ENV_PREFIXES = ("MONGO_", "CREDS_", "JWT_", "REGISTRY_", "SCHEMA_")
_ENV_NAMES = ("HOST", "PORT", "LOG_LEVEL")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's configuration; they build Settings explicitly."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name in _ENV_NAMES:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
async def mongo_uri() -> AsyncIterator[str]:
    if _EXTERNAL_MONGO_URI:
        yield _EXTERNAL_MONGO_URI
        return
    server = EmbeddedMongo(storage_path=":memory:", sync_on_commit=False)
    uri = await server.start()
    try:
        yield uri
    finally:
        await server.stop()


@pytest.fixture(scope="session")
async def mongo_client(mongo_uri: str) -> AsyncIterator[MongoClient]:
    client = create_client(mongo_uri, timeout_seconds=10)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def db_name(mongo_client: MongoClient) -> AsyncIterator[str]:
    """A fresh database name per test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    try:
        yield name
    finally:
        await mongo_client.drop_database(name)


@pytest.fixture
def settings(mongo_uri: str, db_name: str, tmp_path: Path) -> Settings:
    return make_settings(mongo_uri=mongo_uri, db_name=db_name, data_dir=tmp_path)


def make_settings(*, mongo_uri: str, db_name: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mongo_uri": mongo_uri,
        "mongo_db": db_name,
        "data_dir": data_dir,
        "creds_key": TEST_CREDS_KEY,
        "creds_iv": TEST_CREDS_IV,
        "jwt_secret": TEST_JWT_SECRET,
        "log_format": "console",
        "discovery_timeout_seconds": 5.0,
        "upstream_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The full application with its lifespan running against the test database."""
    from registry.app import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://registry.test") as http:
        yield http


@pytest.fixture
def fixtures_dir() -> Iterator[Path]:
    yield FIXTURES
