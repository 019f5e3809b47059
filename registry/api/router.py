"""The versioned REST API: one router per resource, mounted under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from registry.api import audit, connections, servers, stats, sync, tokens, tools
from registry.api.deps import requires_api_scope

api_router = APIRouter(prefix="/api/v1")

# Each router with the API-scope resource its routes need (read: for GET, write: otherwise) from
# a token that names scopes; None: admin-only routes (a scoped token keeps the admin role only
# with the admin scope) and the refresh-JWT exchange (no bearer token).
# Order matters where paths overlap: "/servers/stats" must not be read as a server id, so the
# stats router comes before the servers router.
for resource_router, scope_resource in (
    (stats.router, None),
    (servers.router, "servers"),
    (audit.router, None),
    (tokens.router, "tokens"),
    (tokens.exchange_router, None),
    (tools.router, "tools"),  # tool catalog (docs/catalog.md)
    (sync.router, "servers"),  # a sync re-discovers a server; its runs are server history
    (connections.router, "servers"),  # gateway connection states (docs/gateway.md)
):
    scope_check = [requires_api_scope(scope_resource)] if scope_resource else []
    api_router.include_router(resource_router, dependencies=scope_check)
