"""Public liveness and readiness probes (the only routes without authentication)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from packages.database.connection import ping
from registry.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process is up (no database call)")
async def get_health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: the database answers",
    responses={503: {"description": "Database unavailable"}},
)
async def get_ready(runtime: RuntimeDep) -> JSONResponse:
    if await ping(runtime.client):
        return JSONResponse({"status": "ready", "database": "ok"})
    return JSONResponse(
        {"error": "unavailable", "message": "Database is not answering", "status": "not_ready"},
        status_code=503,
    )
