"""The versioned REST API: one router per resource, mounted under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from registry.api import audit, connections, servers, stats, sync, tokens, tools

api_router = APIRouter(prefix="/api/v1")

# Order matters where paths overlap: "/servers/stats" must not be read as a server id, so the
# stats router comes before the servers router.
for resource_router in (
    stats.router,
    servers.router,
    audit.router,
    tokens.router,
    tools.router,  # tool catalog (docs/catalog.md)
    sync.router,
    connections.router,  # gateway connection states (docs/gateway.md)
):
    api_router.include_router(resource_router)
