"""A token that names scopes may do only what they name, on every route (docs/credentials.md).

The route set is read from the served OpenAPI document, like the authentication sweep, so a
route added later is covered without editing this test.
"""

from __future__ import annotations

import re

from httpx import AsyncClient

from packages.database.connection import MongoClient
from registry.auth import API_SCOPES
from registry.config import Settings
from tests.factories import Caller, make_caller
from tests.integration.api.server_data import SERVERS, insert_server, server_body
from tests.integration.api.test_authentication_required import PUBLIC, SOME_ID


async def _operations(client: AsyncClient) -> list[tuple[str, str]]:
    spec = (await client.get("/openapi.json")).json()
    return [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
        and (method.upper(), path) not in PUBLIC
    ]


async def _call(client: AsyncClient, caller: Caller, method: str, path: str) -> int:
    url = re.sub(r"\{[^}]+\}", SOME_ID, path)
    body: dict[str, object] | None = {} if method in {"POST", "PUT", "PATCH"} else None
    response = await client.request(method, url, json=body, headers=caller.headers)
    return response.status_code


async def test_every_route_refuses_a_token_without_its_scope(
    client: AsyncClient, settings: Settings
) -> None:
    """An admin's token narrowed to the gateway reaches no REST route (403 each), while the
    same admin with every API scope is refused by none: the 403s come from the scopes."""
    gateway_only = make_caller(settings, role="admin", scopes=("use:gateway",))
    everything = make_caller(settings, role="admin", scopes=API_SCOPES)
    operations = await _operations(client)

    reached = [
        f"{method} {path}"
        for method, path in operations
        if await _call(client, gateway_only, method, path) != 403
    ]
    refused = [
        f"{method} {path}"
        for method, path in operations
        if await _call(client, everything, method, path) in {401, 403}
    ]

    assert len(operations) > 25
    assert reached == []
    assert refused == []


async def test_read_scope_reads_but_does_not_write(
    client: AsyncClient, settings: Settings, mongo_client: MongoClient
) -> None:
    reader = make_caller(settings, scopes=("read:servers",))
    server_id = await insert_server(mongo_client, settings, name="mine", author=reader.id)

    listed = await client.get(SERVERS, headers=reader.headers)
    detail = await client.get(f"{SERVERS}/{server_id}", headers=reader.headers)
    tools = await client.get(f"{SERVERS}/{server_id}/tools", headers=reader.headers)
    created = await client.post(SERVERS, json=server_body("nope"), headers=reader.headers)
    patched = await client.patch(
        f"{SERVERS}/{server_id}", json={"title": "X"}, headers=reader.headers
    )
    # A GET that re-discovers changes the server: it needs write:servers too.
    rediscovered = await client.get(
        f"{SERVERS}/{server_id}/tools", params={"refresh": "true"}, headers=reader.headers
    )
    own_tokens = await client.get("/api/v1/tokens", headers=reader.headers)

    assert [r.status_code for r in (listed, detail, tools)] == [200, 200, 200]
    assert [r.status_code for r in (created, patched, rediscovered, own_tokens)] == [403] * 4
    assert created.json() == {
        "error": "forbidden",
        "message": "This token's scopes (read:servers) do not include write:servers",
        "details": {"required_scope": "write:servers"},
        "request_id": created.json()["request_id"],
    }
    assert rediscovered.json()["details"] == {"required_scope": "write:servers"}
    assert own_tokens.json()["details"] == {"required_scope": "read:tokens"}


async def test_narrowed_admin_token_loses_admin_rights(
    client: AsyncClient, settings: Settings, mongo_client: MongoClient
) -> None:
    """An admin's automation token limited to read:servers saw every user's private servers
    and read the statistics; only the admin scope keeps the admin role."""
    other = make_caller(settings)
    await insert_server(mongo_client, settings, name="private", author=other.id)
    narrowed = make_caller(settings, role="admin", scopes=("read:servers",))
    full = make_caller(settings, role="admin", scopes=("read:servers", "admin"))

    narrowed_list = await client.get(SERVERS, headers=narrowed.headers)
    narrowed_stats = await client.get(f"{SERVERS}/stats", headers=narrowed.headers)
    full_list = await client.get(SERVERS, headers=full.headers)
    full_stats = await client.get(f"{SERVERS}/stats", headers=full.headers)

    assert narrowed_list.json()["pagination"]["total"] == 0
    assert narrowed_stats.status_code == 403
    assert full_list.json()["pagination"]["total"] == 1
    assert full_stats.status_code == 200


async def test_generated_token_is_limited_to_its_scopes(
    client: AsyncClient, settings: Settings
) -> None:
    """The design's automation token: requested read:servers, it could still create tokens."""
    session = make_caller(settings)  # the external app's session token names no scopes
    issued = await client.post(
        "/api/v1/tokens/generate",
        json={"requested_scopes": ["read:servers"]},
        headers=session.headers,
    )
    automation = {"Authorization": f"Bearer {issued.json()['tokens']['access_token']}"}

    read = await client.get(SERVERS, headers=automation)
    store = await client.post(
        "/api/v1/tokens",
        json={"type": "api_key", "identifier": "github", "token": "sk-123"},
        headers=automation,
    )
    mint = await client.post("/api/v1/tokens/generate", json={}, headers=automation)

    assert issued.status_code == 200
    assert read.status_code == 200
    assert (store.status_code, mint.status_code) == (403, 403)
