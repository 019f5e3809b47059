"""``GET /api/v1/servers/stats``: system-wide figures for admins (design 004).

Included in the API router before the servers router, so ``/servers/stats`` is not taken
for a server id.
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from registry.api.deps import AdminPrincipal
from registry.api.errors import responses
from registry.services.stats import server_statistics

router = APIRouter(prefix="/servers", tags=["servers"])


class ServerStatsPublic(BaseModel):
    """The response of design 004's stats endpoint; definitions in docs/admin.md."""

    model_config = ConfigDict(frozen=True)

    total_servers: int
    servers_by_scope: dict[str, int]
    servers_by_status: dict[str, int]
    servers_by_transport: dict[str, int]
    total_tokens: int
    tokens_by_type: dict[str, int]
    active_tokens: int
    expired_tokens: int
    active_users: int
    total_tools: int


@router.get(
    "/stats",
    summary="System-wide server, token and user statistics (admins only)",
    response_model=ServerStatsPublic,
    responses=responses(401, 403),
)
async def get_server_stats(admin: AdminPrincipal) -> ServerStatsPublic:
    stats = await server_statistics()
    return ServerStatsPublic(**asdict(stats))
