"""Gateway e2e tests run against real upstream MCP servers from ``tests.support``.

``gateway_service`` runs the whole registry (API + gateway) with uvicorn on a free port, so the
real ``mcp`` client reaches the gateway over HTTP exactly as an external client would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import httpx2
import pytest
from bson import ObjectId
from mcp.client.session import ClientSession, MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client
from pymongo.asynchronous.collection import AsyncCollection

from packages.database.connection import MongoClient
from packages.database.encryption import EncryptionService
from registry.config import Settings
from tests.conftest import TEST_CREDS_IV, TEST_CREDS_KEY
from tests.factories import Caller, make_caller
from tests.support import ThreadedASGIServer
from tests.support.fixtures import upstream_factory

__all__ = ["GatewayService", "gateway_service", "mcp_client", "upstream_factory"]

# -- the service under test, served by uvicorn (gateway tests) ---------------------------------


@dataclass
class GatewayService:
    """The registry (API + gateway) on a free port, and the test's handle on its database."""

    server: ThreadedASGIServer
    settings: Settings
    servers: AsyncCollection[dict[str, Any]]
    admin: Caller

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def url(self, name: str) -> str:
        return f"{self.base_url}/mcp/{name}"

    def caller(self, *, role: str = "user") -> Caller:
        return make_caller(self.settings, role=role)

    async def add_server(
        self,
        name: str,
        url: str,
        *,
        transport: str = "streamable-http",
        scope: str = "shared_app",
        author: str | None = None,
        api_key: dict[str, Any] | None = None,
        requires_oauth: bool = False,
        status: str = "active",
        timeout_ms: int | None = None,
    ) -> str:
        """Insert an ``mcpservers`` document as the servers API stores it; returns its id."""
        config: dict[str, Any] = {"type": transport, "url": url, "requiresOAuth": requires_oauth}
        if api_key is not None:
            stored = dict(api_key)
            if stored.get("key"):
                stored["key"] = ENCRYPTION.encrypt(str(stored["key"]))
            config["apiKey"] = stored
        if timeout_ms is not None:
            config["timeout"] = timeout_ms
        now = datetime.now(UTC).replace(microsecond=0)
        result = await self.servers.insert_one(
            {
                "serverName": name,
                "config": config,
                "author": ObjectId(author or self.admin.id),
                "scope": scope,
                "status": status,
                "path": f"/mcp/{name}",
                "tags": [],
                "numStars": 0,
                "createdAt": now,
                "updatedAt": now,
                "__v": 0,
            }
        )
        return str(result.inserted_id)

    async def server_doc(self, server_id: str) -> dict[str, Any]:
        doc = await self.servers.find_one({"_id": ObjectId(server_id)})
        assert doc is not None
        return doc

    async def store_api_key(self, caller: Caller, server_name: str, key: str) -> None:
        """Store the caller's own API key for a server through the tokens API."""
        async with httpx.AsyncClient(base_url=self.base_url, headers=caller.headers) as http:
            response = await http.post(
                "/api/v1/tokens", json={"type": "api_key", "identifier": server_name, "token": key}
            )
        assert response.status_code == 201, response.text


ENCRYPTION = EncryptionService(key_hex=TEST_CREDS_KEY, iv_hex=TEST_CREDS_IV)


@pytest.fixture
def gateway_service(
    settings: Settings, mongo_client: MongoClient, db_name: str
) -> Iterator[GatewayService]:
    from registry.app import create_app

    server = ThreadedASGIServer(lambda: create_app(settings), name="registry")
    server.start()
    try:
        yield GatewayService(
            server=server,
            settings=settings,
            servers=mongo_client[db_name]["mcpservers"],
            admin=make_caller(settings, role="admin"),
        )
    finally:
        server.close()


@asynccontextmanager
async def mcp_client(
    url: str, caller: Caller, *, message_handler: MessageHandlerFnT | None = None
) -> AsyncIterator[ClientSession]:
    """The real ``mcp`` SDK client through the gateway, initialized; ``message_handler``
    receives the server's notifications."""
    async with (
        httpx2.AsyncClient(headers=caller.headers, timeout=10) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write, message_handler=message_handler) as session,
    ):
        await session.initialize()
        yield session
