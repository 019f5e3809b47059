"""``POST /api/v1/tokens/generate`` and ``POST /api/v1/tokens/jwt/refresh``."""

from __future__ import annotations

import jwt
from httpx import AsyncClient

from registry.config import Settings
from tests.conftest import TEST_JWT_SECRET
from tests.factories import make_caller

GENERATE = "/api/v1/tokens/generate"
REFRESH = "/api/v1/tokens/jwt/refresh"
# Any authenticated route that takes a bearer access token (scopes: read:servers).
PROTECTED = "/api/v1/servers"


def _claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"])
    return claims


async def test_generate_tokens_issues_working_pair(client: AsyncClient, settings: Settings) -> None:
    # A caller whose token names no scopes (the external app's session) may request any
    # non-admin API scope: the issued token is limited to them.
    caller = make_caller(settings)
    body = {
        "requested_scopes": ["read:servers", "write:servers"],
        "expires_in_hours": 8,
        "description": "Token for automation",
    }

    response = await client.post(GENERATE, json=body, headers=caller.headers)

    assert response.status_code == 200
    result = response.json()
    assert result["success"] is True
    tokens = result["tokens"]
    assert tokens["expires_in"] == 8 * 3600
    assert tokens["refresh_expires_in"] == settings.jwt_refresh_expires_hours * 3600
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "read:servers write:servers"
    access = _claims(tokens["access_token"])
    assert access["sub"] == caller.id
    assert access["token_use"] == "access"
    assert int(str(access["exp"])) - int(str(access["iat"])) == 8 * 3600
    issued_headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get(PROTECTED, headers=issued_headers)).status_code == 200
    limited = await client.get("/api/v1/tokens", headers=issued_headers)
    assert limited.status_code == 403
    assert limited.json()["details"] == {"required_scope": "read:tokens"}


async def test_generate_tokens_scope_not_granted_is_forbidden(
    client: AsyncClient, settings: Settings
) -> None:
    caller = make_caller(settings, scopes=("read:servers", "write:tokens"))
    body = {"requested_scopes": ["read:servers", "write:servers"], "expires_in_hours": 1}

    response = await client.post(GENERATE, json=body, headers=caller.headers)

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert response.json()["details"] == {"scopes": ["write:servers"]}


async def test_generate_tokens_expiry_out_of_bounds_is_rejected(
    client: AsyncClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    too_long = settings.jwt_max_expires_hours + 1
    for hours in (0, -1, too_long):
        response = await client.post(
            GENERATE, json={"expires_in_hours": hours}, headers=caller.headers
        )
        assert response.status_code == 400, hours
        assert response.json()["message"] == (
            f"expires_in_hours must be between 1 and {settings.jwt_max_expires_hours}"
        )


async def test_generate_tokens_non_integer_hours_are_422(
    client: AsyncClient, settings: Settings
) -> None:
    """``true`` was read as 1 hour, ``"5"`` and ``2.0`` as numbers."""
    caller = make_caller(settings)
    for hours in (True, "5", 2.0):
        response = await client.post(
            GENERATE, json={"expires_in_hours": hours}, headers=caller.headers
        )
        assert response.status_code == 422, hours
        assert response.json()["error"] == "validation_error"


async def test_generate_tokens_defaults_to_callers_scopes_and_eight_hours(
    client: AsyncClient, settings: Settings
) -> None:
    caller = make_caller(settings, scopes=("read:servers", "write:tokens"))

    response = await client.post(GENERATE, json={}, headers=caller.headers)
    # Every field is optional, so is the body (it answered 422).
    without_body = await client.post(GENERATE, headers=caller.headers)

    assert response.status_code == 200
    assert response.json()["tokens"]["scope"] == "read:servers write:tokens"
    assert response.json()["tokens"]["expires_in"] == 8 * 3600
    assert without_body.status_code == 200
    assert without_body.json()["tokens"]["expires_in"] == 8 * 3600


async def test_refresh_token_is_rejected_as_access_token(
    client: AsyncClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    issued = (await client.post(GENERATE, json={}, headers=caller.headers)).json()["tokens"]

    response = await client.get(
        PROTECTED, headers={"Authorization": f"Bearer {issued['refresh_token']}"}
    )

    assert response.status_code == 401
    assert response.json()["message"] == "Refresh token cannot be used as access token"


async def test_refresh_jwt_returns_new_access_token(
    client: AsyncClient, settings: Settings
) -> None:
    caller = make_caller(settings, scopes=("read:servers", "write:tokens"))
    issued = (
        await client.post(GENERATE, json={"expires_in_hours": 2}, headers=caller.headers)
    ).json()["tokens"]

    response = await client.post(REFRESH, json={"refresh_token": issued["refresh_token"]})

    assert response.status_code == 200
    tokens = response.json()["tokens"]
    assert tokens["access_token"] != issued["access_token"]
    assert tokens["refresh_token"] == issued["refresh_token"]
    assert tokens["expires_in"] == 2 * 3600
    assert tokens["scope"] == "read:servers write:tokens"
    assert _claims(tokens["access_token"])["sub"] == caller.id
    new_headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get(PROTECTED, headers=new_headers)).status_code == 200


async def test_refresh_jwt_with_access_token_or_garbage_is_unauthorized(
    client: AsyncClient, settings: Settings
) -> None:
    caller = make_caller(settings)
    issued = (await client.post(GENERATE, json={}, headers=caller.headers)).json()["tokens"]

    with_access = await client.post(REFRESH, json={"refresh_token": issued["access_token"]})
    with_garbage = await client.post(REFRESH, json={"refresh_token": "not-a-jwt"})

    assert with_access.status_code == 401
    assert with_access.json()["message"] == "Access token cannot be used as refresh token"
    assert with_garbage.status_code == 401
