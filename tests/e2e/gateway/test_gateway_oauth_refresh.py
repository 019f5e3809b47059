"""An expired OAuth access token is renewed with the user's refresh token, transparently.

A real token endpoint (Starlette, in its own thread) and a real upstream that insists on the
renewed bearer token; the records are written as the external app writes them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId, json_util
from pymongo.asynchronous.collection import AsyncCollection
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.e2e.gateway.conftest import ENCRYPTION, GatewayService, mcp_client
from tests.factories import Caller
from tests.support.asgi_server import ThreadedASGIServer
from tests.support.fixtures import UpstreamFactory
from tests.support.mcp_messages import raw_initialize, text_of
from tests.support.upstreams import RunningUpstream

OLD_ACCESS = "gho_expired_access_000000"
OLD_REFRESH = "ghr_refresh_token_111111"
NEW_ACCESS = "gho_renewed_access_222222"
NEW_REFRESH = "ghr_rotated_refresh_333333"
CLIENT_SECRET = "client-secret-444444"


class TokenEndpoint:
    """``POST /token``: answers ``response`` (or ``status`` with an OAuth error) and records
    every form it received."""

    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.status = 200
        self.response: dict[str, Any] = {
            "access_token": NEW_ACCESS,
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": NEW_REFRESH,
        }
        self._lock = threading.Lock()
        self.server = ThreadedASGIServer(self._app, name="token-endpoint")

    def _app(self) -> Starlette:
        async def token(request: Request) -> JSONResponse:
            form = {key: str(value) for key, value in (await request.form()).items()}
            if "authorization" in request.headers:
                form["(authorization header)"] = request.headers["authorization"]
            with self._lock:
                self.forms.append(form)
            await asyncio.sleep(0.05)  # a provider is not instant: lets concurrent calls overlap
            if self.status != 200:
                return JSONResponse({"error": "invalid_grant"}, status_code=self.status)
            return JSONResponse(self.response)

        return Starlette(routes=[Route("/token", token, methods=["POST"])])

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/token"


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()
    endpoint.server.start()
    try:
        yield endpoint
    finally:
        endpoint.server.close()


def tokens_of(service: GatewayService) -> AsyncCollection[dict[str, Any]]:
    return service.servers.database["tokens"]


async def oauth_server(service: GatewayService, upstream_url: str, endpoint: TokenEndpoint) -> None:
    """A shared_user OAuth server whose client is registered in its config."""
    await service.add_server("oauthy", upstream_url, scope="shared_user", requires_oauth=True)
    await service.servers.update_one(
        {"serverName": "oauthy"},
        {
            "$set": {
                "config.oauth": {
                    "token_url": endpoint.url,
                    "client_id": "registry-client",
                    "client_secret": ENCRYPTION.encrypt(CLIENT_SECRET),
                }
            }
        },
    )


async def store_records(service: GatewayService, user: Caller, *, access_expired: bool) -> None:
    """An expired (or live) access record and a live refresh record, as LibreChat writes them."""
    now = datetime.now(UTC).replace(microsecond=0)
    access_until = now - timedelta(minutes=5) if access_expired else now + timedelta(hours=1)
    records = [
        ("mcp_oauth", "mcp:oauthy", OLD_ACCESS, access_until),
        ("mcp_oauth_refresh", "mcp:oauthy:refresh", OLD_REFRESH, now + timedelta(days=30)),
    ]
    await tokens_of(service).insert_many(
        [
            {
                "userId": ObjectId(user.id),
                "type": stored_type,
                "identifier": identifier,
                "token": ENCRYPTION.encrypt(value),
                "createdAt": now - timedelta(hours=2),
                "expiresAt": until,
                "metadata": {"server_url": "https://example.test/mcp"},
                "__v": 0,
            }
            for stored_type, identifier, value, until in records
        ]
    )


async def oauth_setup(
    service: GatewayService,
    upstream_factory: UpstreamFactory,
    endpoint: TokenEndpoint,
    *,
    accepts: str,
    access_expired: bool,
) -> tuple[RunningUpstream, Caller]:
    """An upstream that accepts only the bearer token ``accepts``, registered as an OAuth
    server, and a caller whose records for it are stored (the access one expired or not)."""
    upstream = upstream_factory(auth="bearer", api_key=accepts)
    await oauth_server(service, upstream.url, endpoint)
    user = service.caller()
    await store_records(service, user, access_expired=access_expired)
    return upstream, user


async def test_expired_access_token_is_renewed_and_stored_for_both_apps(
    gateway_service: GatewayService,
    upstream_factory: UpstreamFactory,
    token_endpoint: TokenEndpoint,
) -> None:
    upstream, user = await oauth_setup(
        gateway_service, upstream_factory, token_endpoint, accepts=NEW_ACCESS, access_expired=True
    )

    async with mcp_client(gateway_service.url("oauthy"), user) as session:
        echoed = await session.call_tool("echo", {"text": "renewed"})

    assert text_of(echoed.content[0]) == "renewed"
    assert token_endpoint.forms == [
        {
            "grant_type": "refresh_token",
            "refresh_token": OLD_REFRESH,
            "client_id": "registry-client",
            "client_secret": CLIENT_SECRET,
        }
    ]
    assert all(
        seen.get("authorization") == f"Bearer {NEW_ACCESS}"
        for seen in upstream.relayed_requests_seen
    )
    docs = await tokens_of(gateway_service).find({"userId": ObjectId(user.id)}).to_list()
    by_type = {doc["type"]: doc for doc in docs}
    assert len(docs) == 2  # updated in place, no duplicates
    access, refresh = by_type["mcp_oauth"], by_type["mcp_oauth_refresh"]
    assert ENCRYPTION.decrypt(access["token"]) == NEW_ACCESS
    assert ENCRYPTION.decrypt(refresh["token"]) == NEW_REFRESH
    lives = access["expiresAt"] - datetime.now(UTC)
    assert timedelta(minutes=55) < lives <= timedelta(hours=1)
    assert access["metadata"] == {"server_url": "https://example.test/mcp"}
    text = json_util.dumps(docs)
    for secret in (OLD_ACCESS, OLD_REFRESH, NEW_ACCESS, NEW_REFRESH, CLIENT_SECRET):
        assert secret not in text
    audit = await gateway_service.servers.database["audit_logs"].find_one({"action": "refresh"})
    assert audit is not None
    assert NEW_ACCESS not in json_util.dumps(audit)


async def test_concurrent_calls_redeem_the_refresh_token_once(
    gateway_service: GatewayService,
    upstream_factory: UpstreamFactory,
    token_endpoint: TokenEndpoint,
) -> None:
    _upstream, user = await oauth_setup(
        gateway_service, upstream_factory, token_endpoint, accepts=NEW_ACCESS, access_expired=True
    )

    async def one_call(index: int) -> str:
        async with mcp_client(gateway_service.url("oauthy"), user) as session:
            result = await session.call_tool("echo", {"text": f"call-{index}"})
        return text_of(result.content[0])

    answers = await asyncio.gather(*(one_call(index) for index in range(5)))

    assert sorted(answers) == [f"call-{index}" for index in range(5)]
    assert len(token_endpoint.forms) == 1


async def test_rejected_refresh_asks_the_user_to_sign_in_again(
    gateway_service: GatewayService,
    upstream_factory: UpstreamFactory,
    token_endpoint: TokenEndpoint,
) -> None:
    upstream, user = await oauth_setup(
        gateway_service, upstream_factory, token_endpoint, accepts=NEW_ACCESS, access_expired=True
    )
    token_endpoint.status = 400

    response = await raw_initialize(gateway_service.url("oauthy"), user.headers)

    message = response.json()["error"]["message"]
    assert "No OAuth access token stored for server 'oauthy'" in message
    assert OLD_REFRESH not in response.text and CLIENT_SECRET not in response.text
    assert len(token_endpoint.forms) == 1
    assert upstream.relayed_requests_seen == []
    access = await tokens_of(gateway_service).find_one({"type": "mcp_oauth"})
    assert access is not None and ENCRYPTION.decrypt(access["token"]) == OLD_ACCESS


async def test_live_access_token_is_used_without_refreshing(
    gateway_service: GatewayService,
    upstream_factory: UpstreamFactory,
    token_endpoint: TokenEndpoint,
) -> None:
    _upstream, user = await oauth_setup(
        gateway_service, upstream_factory, token_endpoint, accepts=OLD_ACCESS, access_expired=False
    )

    async with mcp_client(gateway_service.url("oauthy"), user) as session:
        echoed = await session.call_tool("echo", {"text": "as is"})

    assert text_of(echoed.content[0]) == "as is"
    assert token_endpoint.forms == []


async def test_users_registered_client_is_preferred_with_its_auth_method(
    gateway_service: GatewayService,
    upstream_factory: UpstreamFactory,
    token_endpoint: TokenEndpoint,
) -> None:
    """The client LibreChat registered for the user (``mcp_oauth_client``) wins over the
    server's; ``client_secret_basic`` sends the credentials as HTTP Basic."""
    _upstream, user = await oauth_setup(
        gateway_service, upstream_factory, token_endpoint, accepts=NEW_ACCESS, access_expired=True
    )
    client_info = {
        "client_id": "dyn-client",
        "client_secret": "dyn-secret",
        "token_endpoint_auth_method": "client_secret_basic",
    }
    now = datetime.now(UTC)
    await tokens_of(gateway_service).insert_one(
        {
            "userId": ObjectId(user.id),
            "type": "mcp_oauth_client",
            "identifier": "mcp:oauthy:client",
            "token": ENCRYPTION.encrypt(json.dumps(client_info)),
            "createdAt": now,
            "expiresAt": now + timedelta(days=365),
            "__v": 0,
        }
    )

    async with mcp_client(gateway_service.url("oauthy"), user) as session:
        await session.call_tool("echo", {"text": "dyn"})

    basic = base64.b64encode(b"dyn-client:dyn-secret").decode()
    assert token_endpoint.forms == [
        {
            "grant_type": "refresh_token",
            "refresh_token": OLD_REFRESH,
            "(authorization header)": f"Basic {basic}",
        }
    ]
