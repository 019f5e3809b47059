"""``/api/v1/tools``: the governed tool catalog (docs/catalog.md). Reads MongoDB only."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from packages.models.tools import METADATA_FIELDS
from registry.api.deps import CurrentPrincipal
from registry.api.errors import responses
from registry.api.schemas.pagination import Page, Pagination, PerPage
from registry.api.schemas.tools import (
    ToolHistory,
    ToolList,
    ToolPublic,
    ToolUpdate,
    ToolVersionPublic,
)
from registry.services.catalog_tools import (
    ToolChanges,
    ToolQuery,
    delete_tool,
    get_tool,
    list_tools,
    tool_history,
    update_tool,
)

router = APIRouter(prefix="/tools", tags=["tools"])

_FILTER = Query(min_length=1, max_length=200)


def _changes(body: ToolUpdate) -> ToolChanges:
    sent = body.model_fields_set
    changes: ToolChanges = {}
    if "exposure_state" in sent and body.exposure_state is not None:
        changes["exposure_state"] = body.exposure_state
    if "registration_state" in sent and body.registration_state is not None:
        changes["registration_state"] = body.registration_state
    if "display_name" in sent:
        changes["display_name"] = body.display_name
    if "tags" in sent:
        changes["tags"] = list(body.tags or [])
    if "allowed_roles" in sent:
        changes["allowed_roles"] = list(body.allowed_roles or [])
    if "allowed_groups" in sent:
        changes["allowed_groups"] = list(body.allowed_groups or [])
    if "metadata" in sent:
        if body.metadata is None:
            changes["metadata"] = dict.fromkeys(METADATA_FIELDS)
        else:
            changes["metadata"] = body.metadata.model_dump(exclude_unset=True)
    return changes


@router.get(
    "",
    summary="List catalog tools the caller may see",
    response_model=ToolList,
    responses=responses(401, 403, 404, 422),
)
async def list_catalog_tools(
    user: CurrentPrincipal,
    server_id: Annotated[str | None, _FILTER] = None,
    exposure_state: Literal["draft", "active", "disabled", "deleted"] | None = None,
    registration_state: Literal["selected", "unselected", "stale"] | None = None,
    tag: Annotated[str | None, _FILTER] = None,
    query: Annotated[str | None, _FILTER] = None,
    include_stale: bool = False,
    include_disabled: bool = False,
    page: Page = 1,
    per_page: PerPage = 20,
) -> ToolList:
    filters = ToolQuery(
        server_id=server_id,
        exposure_state=exposure_state,
        registration_state=registration_state,
        tag=tag,
        query=query,
        include_stale=include_stale,
        include_disabled=include_disabled,
    )
    result = await list_tools(user=user, query=filters, page=page, per_page=per_page)
    return ToolList(
        tools=[ToolPublic.from_document(tool) for tool in result.items],
        pagination=Pagination.of(result),
    )


@router.get(
    "/{tool_id}",
    summary="Get one catalog tool",
    response_model=ToolPublic,
    responses=responses(401, 404),
)
async def get_catalog_tool(user: CurrentPrincipal, tool_id: str) -> ToolPublic:
    return ToolPublic.from_document(await get_tool(user=user, tool_id=tool_id))


@router.patch(
    "/{tool_id}",
    summary="Govern a tool: states, metadata, allowed roles and groups",
    response_model=ToolPublic,
    responses=responses(400, 401, 403, 404, 409, 422),
)
async def update_catalog_tool(user: CurrentPrincipal, tool_id: str, body: ToolUpdate) -> ToolPublic:
    tool = await update_tool(
        user=user, tool_id=tool_id, changes=_changes(body), expected_updated_at=body.updated_at
    )
    return ToolPublic.from_document(tool)


@router.delete(
    "/{tool_id}",
    summary="Soft-delete a tool (admins only; it can never be exposed again)",
    status_code=204,
    response_class=Response,
    responses=responses(401, 403, 404),
)
async def delete_catalog_tool(user: CurrentPrincipal, tool_id: str) -> Response:
    await delete_tool(user=user, tool_id=tool_id)
    return Response(status_code=204)


@router.get(
    "/{tool_id}/history",
    summary="The versions of a tool, newest first",
    response_model=ToolHistory,
    responses=responses(401, 404, 422),
)
async def get_tool_history(
    user: CurrentPrincipal, tool_id: str, page: Page = 1, per_page: PerPage = 20
) -> ToolHistory:
    result = await tool_history(user=user, tool_id=tool_id, page=page, per_page=per_page)
    return ToolHistory(
        versions=[ToolVersionPublic.from_document(entry) for entry in result.items],
        pagination=Pagination.of(result),
    )
