"""``/api/v1/sync``: trigger a server's catalog sync and read the sync history."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from registry.api.deps import CurrentPrincipal, SettingsDep
from registry.api.errors import responses
from registry.api.schemas.pagination import Page, Pagination, PerPage
from registry.api.schemas.tools import (
    SyncRunList,
    SyncRunPublic,
    SyncSchedulePublic,
    SyncScheduleUpdate,
)
from registry.services.catalog_runs import list_sync_runs, sync_server_now
from registry.services.sync_schedules import get_schedule, set_interval

router = APIRouter(prefix="/sync", tags=["sync"])


@router.post(
    "/servers/{server_id}",
    summary="Sync a server's tools now (the run's outcome says whether discovery worked)",
    response_model=SyncRunPublic,
    responses=responses(401, 403, 404),
)
async def sync_server(
    user: CurrentPrincipal, settings: SettingsDep, server_id: str
) -> SyncRunPublic:
    run = await sync_server_now(user=user, server_id=server_id, settings=settings)
    return SyncRunPublic.from_document(run)


@router.get(
    "/servers/{server_id}/schedule",
    summary="A server's background sync schedule (interval, next due time, last outcome)",
    response_model=SyncSchedulePublic,
    responses=responses(401, 404),
)
async def read_schedule(
    user: CurrentPrincipal, settings: SettingsDep, server_id: str
) -> SyncSchedulePublic:
    view = await get_schedule(
        user=user, server_id=server_id, default_interval_seconds=settings.sync_interval_seconds
    )
    return SyncSchedulePublic.from_view(view)


@router.put(
    "/servers/{server_id}/schedule",
    summary="Set a server's own sync interval (null: back to the global default)",
    response_model=SyncSchedulePublic,
    responses=responses(401, 403, 404, 422),
)
async def update_schedule(
    user: CurrentPrincipal, settings: SettingsDep, server_id: str, body: SyncScheduleUpdate
) -> SyncSchedulePublic:
    view = await set_interval(
        user=user,
        server_id=server_id,
        interval_seconds=body.interval_seconds,
        default_interval_seconds=settings.sync_interval_seconds,
    )
    return SyncSchedulePublic.from_view(view)


@router.get(
    "/runs",
    summary="Sync history, newest first (users see runs of servers they can see)",
    response_model=SyncRunList,
    responses=responses(401, 404, 422),
)
async def list_runs(
    user: CurrentPrincipal,
    server_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    outcome: Literal["running", "success", "error"] | None = None,
    page: Page = 1,
    per_page: PerPage = 20,
) -> SyncRunList:
    result = await list_sync_runs(
        user=user, server_id=server_id, outcome=outcome, page=page, per_page=per_page
    )
    return SyncRunList(
        sync_runs=[SyncRunPublic.from_document(run) for run in result.items],
        pagination=Pagination.of(result),
    )
