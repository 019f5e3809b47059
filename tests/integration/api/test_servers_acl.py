"""The access-control matrix: every server endpoint x caller x scope (design 004 "Admin
Authorization"). Another user's private server must be indistinguishable from a missing one."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from httpx import AsyncClient

from packages.database.connection import MongoClient
from registry.config import Settings
from tests.factories import expired_token, make_caller
from tests.integration.api.server_data import SERVERS, insert_server, server_body

CallerKind = Literal["admin", "author", "other", "anonymous", "expired"]
SCOPES = ("private_user", "shared_user", "shared_app")
CALLERS: tuple[CallerKind, ...] = ("admin", "author", "other", "anonymous", "expired")

# (method, path suffix, JSON body); DELETE runs last because it removes the server.
ENDPOINTS: tuple[tuple[str, str, dict[str, Any] | None], ...] = (
    ("GET", "", None),
    ("GET", "/tools", None),
    ("PATCH", "", {"description": "changed"}),
    ("POST", "/toggle", {"enabled": False}),
    ("POST", "/refresh", None),
    ("GET", "/tools?refresh=true", None),
    ("DELETE", "", None),
)
SUCCESS = {"GET": 200, "PATCH": 200, "POST": 200, "DELETE": 204}
SHARED_DENIALS = {
    ("PATCH", ""): "Only admins can modify shared servers",
    ("POST", "/toggle"): "Only admins can modify shared servers",
    ("POST", "/refresh"): "Only admins can refresh shared servers",
    ("GET", "/tools?refresh=true"): "Only admins can refresh shared servers",
    ("DELETE", ""): "Only admins can delete shared servers",
}


def expected(kind: CallerKind, scope: str, method: str, suffix: str) -> tuple[int, str | None]:
    """(status, error message) the matrix expects."""
    if kind in ("anonymous", "expired"):
        return 401, None
    if kind == "admin" or (kind == "author" and scope == "private_user"):
        return SUCCESS[method], None
    if scope == "private_user":
        return 404, "Server not found"
    denial = SHARED_DENIALS.get((method, suffix))
    return (403, denial) if denial else (200, None)


def headers_for(kind: CallerKind, settings: Settings, callers: dict[str, Any]) -> dict[str, str]:
    if kind == "anonymous":
        return {}
    if kind == "expired":
        return {"Authorization": f"Bearer {expired_token(settings)}"}
    headers: dict[str, str] = callers[kind].headers
    return headers


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("kind", CALLERS)
async def test_server_endpoints_acl_matrix(
    client: AsyncClient,
    mongo_client: MongoClient,
    settings: Settings,
    scope: str,
    kind: CallerKind,
) -> None:
    callers = {
        "admin": make_caller(settings, role="admin"),
        "author": make_caller(settings, role="user"),
        "other": make_caller(settings, role="user"),
    }
    server_id = await insert_server(
        mongo_client, settings, name="matrix", author=callers["author"].id, scope=scope
    )
    headers = headers_for(kind, settings, callers)

    for method, suffix, body in ENDPOINTS:
        response = await client.request(
            method, f"{SERVERS}/{server_id}{suffix}", json=body, headers=headers
        )
        status, message = expected(kind, scope, method, suffix)
        assert response.status_code == status, (method, suffix, response.text)
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"] == "unauthorized"
        if message is not None:
            assert response.json()["message"] == message


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("kind", CALLERS)
async def test_register_server_acl_matrix(
    client: AsyncClient, settings: Settings, scope: str, kind: CallerKind
) -> None:
    callers = {
        "admin": make_caller(settings, role="admin"),
        "author": make_caller(settings, role="user"),
        "other": make_caller(settings, role="user"),
    }
    headers = headers_for(kind, settings, callers)

    response = await client.post(SERVERS, json=server_body("created", scope=scope), headers=headers)

    if kind in ("anonymous", "expired"):
        assert response.status_code == 401
    elif kind == "admin" or scope == "private_user":
        assert response.status_code == 201
        assert response.json()["scope"] == scope
        assert response.json()["author"] == callers[kind].id
    else:
        assert response.status_code == 403
        assert response.json()["message"] == "Only admins can create shared servers"


@pytest.mark.parametrize("kind", CALLERS)
async def test_list_servers_never_leaks_private_servers(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings, kind: CallerKind
) -> None:
    callers = {
        "admin": make_caller(settings, role="admin"),
        "author": make_caller(settings, role="user"),
        "other": make_caller(settings, role="user"),
    }
    names: dict[str, str] = {}
    for scope in SCOPES:
        for owner in ("author", "other"):
            name = f"{owner}-{scope}".replace("_", "-")
            await insert_server(
                mongo_client, settings, name=name, author=callers[owner].id, scope=scope
            )
            names[name] = scope
    headers = headers_for(kind, settings, callers)

    response = await client.get(SERVERS, params={"per_page": 100}, headers=headers)

    if kind in ("anonymous", "expired"):
        assert response.status_code == 401
        return
    assert response.status_code == 200
    listed = {server["serverName"] for server in response.json()["servers"]}
    if kind == "admin":
        assert listed == set(names)
    else:
        visible = {
            name
            for name, scope in names.items()
            if scope != "private_user" or name.startswith(f"{kind}-")
        }
        assert listed == visible
        assert response.json()["pagination"]["total"] == len(visible)
    for scope in SCOPES:
        scoped = await client.get(
            SERVERS, params={"scope": scope, "query": "private"}, headers=headers
        )
        assert all(server["scope"] == scope for server in scoped.json()["servers"])
        if kind != "admin" and scope == "private_user":
            assert {s["serverName"] for s in scoped.json()["servers"]} == {f"{kind}-private-user"}


async def test_update_server_user_cannot_move_to_shared_scope(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    author = make_caller(settings, role="user")
    server_id = await insert_server(mongo_client, settings, name="mine", author=author.id)

    response = await client.patch(
        f"{SERVERS}/{server_id}", json={"scope": "shared_app"}, headers=author.headers
    )

    assert response.status_code == 403
    assert response.json()["message"] == "Only admins can create shared servers"


async def test_update_server_other_user_scope_change_still_not_found(
    client: AsyncClient, mongo_client: MongoClient, settings: Settings
) -> None:
    """The scope check must not reveal that another user's private server exists."""
    author = make_caller(settings, role="user")
    other = make_caller(settings, role="user")
    server_id = await insert_server(mongo_client, settings, name="hidden", author=author.id)

    response = await client.patch(
        f"{SERVERS}/{server_id}", json={"scope": "shared_app"}, headers=other.headers
    )

    assert response.status_code == 404
    assert response.json()["message"] == "Server not found"
