"""``/api/v1/servers``: register, list, read, update, delete, toggle and refresh MCP servers.

``/api/v1/servers/stats`` belongs to another router, which must be included first so that
``stats`` is never read as a server id.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi import status as http_status

from packages.models import MCPServer
from registry.api.deps import CurrentPrincipal, RuntimeDep
from registry.api.errors import responses
from registry.api.schemas.pagination import Pagination, PerPage
from registry.api.schemas.server_actions import (
    RefreshResponse,
    ServerToolsResponse,
    ToggleRequest,
    ToggleResponse,
)
from registry.api.schemas.servers import (
    OBJECT_ID_PATTERN,
    ServerCreate,
    ServerList,
    ServerListItem,
    ServerPublic,
    ServerUpdate,
    StateReader,
)
from registry.auth import UserContext
from registry.gateway.status import connection_state_for
from registry.runtime import Runtime
from registry.services import servers as service

router = APIRouter(prefix="/servers", tags=["servers"])


def _state_reader(runtime: Runtime, principal: UserContext) -> StateReader:
    """Reads the caller's connection state: app-level, or the caller's own for servers that
    use per-user credentials (design 004 "Connection Lookup Flow")."""
    store = runtime.connection_states

    def state_of(server: MCPServer) -> str:
        document = server.model_dump(by_alias=True)
        return connection_state_for(store, doc=document, user_id=principal.user_id)[1].value

    return state_of


@router.get(
    "",
    summary="List the servers the caller may see",
    response_model=ServerList,
    responses=responses(401, 403, 422),
)
async def list_servers(
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    query: Annotated[str | None, Query(max_length=200)] = None,
    scope: Literal["shared_app", "shared_user", "private_user"] | None = None,
    status: Literal["active", "inactive", "error"] | None = None,
    author: Annotated[str | None, Query(pattern=OBJECT_ID_PATTERN)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: PerPage = 20,
) -> ServerList:
    result = await service.list_servers(
        principal=principal,
        query=query,
        scope=scope,
        status=status,
        author=author,
        page=page,
        per_page=per_page,
    )
    state_of = _state_reader(runtime, principal)
    return ServerList(
        servers=[ServerListItem.from_document(s, state_of=state_of) for s in result.servers],
        pagination=Pagination.of(result),
    )


@router.post(
    "",
    summary="Register a server (its tools are discovered first)",
    status_code=http_status.HTTP_201_CREATED,
    response_model=ServerPublic,
    responses=responses(400, 401, 403, 409, 422),
)
async def register_server(
    body: ServerCreate, principal: CurrentPrincipal, runtime: RuntimeDep
) -> ServerPublic:
    server = await service.register_server(
        principal=principal,
        fields=body.to_fields(),
        discovery_timeout_seconds=runtime.settings.discovery_timeout_seconds,
        default_tool_exposure=runtime.settings.default_tool_exposure,
    )
    return ServerPublic.from_document(server, state_of=_state_reader(runtime, principal))


@router.get(
    "/{server_id}",
    summary="Read one server, with its tool functions",
    response_model=ServerPublic,
    responses=responses(401, 404),
)
async def get_server(
    server_id: str, principal: CurrentPrincipal, runtime: RuntimeDep
) -> ServerPublic:
    server = await service.get_server(principal=principal, server_id=server_id)
    return ServerPublic.from_document(server, state_of=_state_reader(runtime, principal))


@router.patch(
    "/{server_id}",
    summary="Update a server (optimistic concurrency with updatedAt)",
    response_model=ServerPublic,
    responses=responses(400, 401, 403, 404, 409, 422),
)
async def update_server(
    server_id: str, body: ServerUpdate, principal: CurrentPrincipal, runtime: RuntimeDep
) -> ServerPublic:
    server = await service.update_server(
        principal=principal,
        server_id=server_id,
        fields=body.to_fields(),
        provided_updated_at=body.updated_at,
        states=runtime.connection_states,
    )
    return ServerPublic.from_document(server, state_of=_state_reader(runtime, principal))


@router.delete(
    "/{server_id}",
    summary="Delete a server",
    status_code=http_status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(401, 403, 404),
)
async def delete_server(
    server_id: str, principal: CurrentPrincipal, runtime: RuntimeDep
) -> Response:
    await service.delete_server(
        principal=principal, server_id=server_id, states=runtime.connection_states
    )
    return Response(status_code=http_status.HTTP_204_NO_CONTENT)


@router.post(
    "/{server_id}/toggle",
    summary="Enable or disable a server",
    response_model=ToggleResponse,
    responses=responses(401, 403, 404, 409, 422),
)
async def toggle_server(
    server_id: str, body: ToggleRequest, principal: CurrentPrincipal
) -> ToggleResponse:
    server = await service.toggle_server(
        principal=principal, server_id=server_id, enabled=body.enabled
    )
    return ToggleResponse.from_document(server)


@router.get(
    "/{server_id}/tools",
    summary="The server's tools in MCP format (refresh=true re-discovers first)",
    response_model=ServerToolsResponse,
    responses=responses(401, 403, 404, 409, 422),
)
async def get_server_tools(
    server_id: str,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    refresh: bool = False,
) -> ServerToolsResponse:
    result = await service.get_server_tools(
        principal=principal,
        server_id=server_id,
        refresh=refresh,
        discovery_timeout_seconds=runtime.settings.discovery_timeout_seconds,
        default_tool_exposure=runtime.settings.default_tool_exposure,
    )
    return ServerToolsResponse.build(
        result.server, tools=result.tools, cached=result.cached, retrieved_at=result.retrieved_at
    )


@router.post(
    "/{server_id}/refresh",
    summary="Reconnect to the server and update its tools and health",
    response_model=RefreshResponse,
    responses=responses(401, 403, 404, 409),
)
async def refresh_server(
    server_id: str, principal: CurrentPrincipal, runtime: RuntimeDep
) -> RefreshResponse:
    server, outcome = await service.refresh_server(
        principal=principal,
        server_id=server_id,
        discovery_timeout_seconds=runtime.settings.discovery_timeout_seconds,
        default_tool_exposure=runtime.settings.default_tool_exposure,
    )
    return RefreshResponse.build(server, succeeded=outcome.succeeded)
