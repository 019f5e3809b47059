"""The versioned REST API: one router per resource, mounted under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

api_router = APIRouter(prefix="/api/v1")

# Resource routers are included below, one line each.
from registry.api import audit, stats  # noqa: E402

# stats before the servers router: "/servers/stats" must not be read as a server id.
api_router.include_router(stats.router)
api_router.include_router(audit.router)
from registry.api import tokens as _tokens  # noqa: E402

api_router.include_router(_tokens.router)
from registry.api import servers as _servers  # noqa: E402

api_router.include_router(_servers.router)  # after stats: /servers/stats is not a server id
from registry.api import sync as _sync  # noqa: E402
from registry.api import tools as _tools  # noqa: E402

api_router.include_router(_tools.router)  # tool catalog (docs/catalog.md)
api_router.include_router(_sync.router)
from registry.api import connections as _connections  # noqa: E402

api_router.include_router(_connections.router)  # gateway connection states (docs/gateway.md)
