"""``GET /api/v1/connections/status``: the caller's in-memory connection states."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from registry.api.deps import CurrentPrincipal, RuntimeDep
from registry.api.errors import responses
from registry.gateway.status import connection_statuses

router = APIRouter(prefix="/connections", tags=["connections"])


class ConnectionStatusPublic(BaseModel):
    model_config = ConfigDict(frozen=True)

    server_id: str
    server_name: str
    path: str | None
    status: str
    level: Literal["app", "user"]
    connection_state: Literal["disconnected", "connecting", "connected", "error"]
    consecutive_failures: int
    state_since: datetime | None
    last_connected: datetime | None
    last_error: datetime | None
    error_message: str | None


class ConnectionStatusList(BaseModel):
    connections: list[ConnectionStatusPublic]


@router.get(
    "/status",
    summary="Connection state of every server the caller can see",
    responses=responses(401),
)
async def get_connection_status(
    runtime: RuntimeDep, principal: CurrentPrincipal
) -> ConnectionStatusList:
    statuses = await connection_statuses(
        database=runtime.database, store=runtime.connection_states, user=principal
    )
    return ConnectionStatusList(
        connections=[
            ConnectionStatusPublic.model_validate(status, from_attributes=True)
            for status in statuses
        ]
    )
