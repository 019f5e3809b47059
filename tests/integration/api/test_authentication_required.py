"""Every route needs a bearer token, except the few that are public on purpose.

The route set is read from the served OpenAPI document, so a route added later is covered
without editing this test (and a new public route must be named here deliberately).
"""

from __future__ import annotations

import re

from httpx import AsyncClient

# (method, path): public by design.
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    # The refresh JWT in the body is the credential (docs/credentials.md).
    ("POST", "/api/v1/tokens/jwt/refresh"),
}
SOME_ID = "6718a2c4e1f03b7d9c00b001"


async def test_every_route_but_the_public_ones_requires_a_token(client: AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operations = [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    unprotected: list[str] = []

    for method, path in operations:
        if (method, path) in PUBLIC:
            continue
        url = re.sub(r"\{[^}]+\}", SOME_ID, path)
        body: dict[str, object] | None = {} if method in {"POST", "PUT", "PATCH"} else None
        response = await client.request(method, url, json=body)
        if response.status_code != 401 or response.headers.get("www-authenticate") != "Bearer":
            unprotected.append(f"{method} {path} -> {response.status_code}")

    assert len(operations) > 25
    assert unprotected == []
    assert {(method, path) for method, path in PUBLIC} <= set(operations)
