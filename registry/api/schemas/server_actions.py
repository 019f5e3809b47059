"""Response schemas of the server actions: toggle, tools and refresh (design 004)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from packages.models import MCPServer
from registry.api.schemas.servers import UtcDateTime, count_tools


class ToggleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict: "yes", 1 or "false" switching a server on or off by lax coercion is a surprise.
    enabled: StrictBool


class ToggleResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    server_name: str = Field(alias="serverName")
    status: str
    enabled: bool
    message: str
    updated_at: UtcDateTime | None = Field(default=None, alias="updatedAt")

    @classmethod
    def from_document(cls, server: MCPServer) -> Self:
        enabled = server.status != "inactive"
        return cls(
            id=str(server.id),
            server_name=server.server_name,
            status=server.status or "active",
            enabled=enabled,
            message=f"Server {'enabled' if enabled else 'disabled'} successfully",
            updated_at=server.updated_at,
        )


class McpTool(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    description: str | None = None
    input_schema: dict[str, Any] = Field(alias="inputSchema")


class ServerToolsResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    server_name: str = Field(alias="serverName")
    tools: list[McpTool]
    num_tools: int = Field(alias="numTools")
    capabilities: dict[str, Any] | None = None
    cached: bool
    retrieved_at: UtcDateTime | None = Field(default=None, alias="retrievedAt")

    @classmethod
    def build(
        cls,
        server: MCPServer,
        *,
        tools: list[dict[str, Any]],
        cached: bool,
        retrieved_at: datetime | None,
    ) -> Self:
        return cls.model_validate(
            {
                "id": str(server.id),
                "serverName": server.server_name,
                "tools": tools,
                "numTools": len(tools),
                "capabilities": _parse_capabilities(server.config.root.capabilities),
                "cached": cached,
                "retrievedAt": retrieved_at,
            }
        )


def _parse_capabilities(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class RefreshResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    server_name: str = Field(alias="serverName")
    status: str | None = None
    last_connected: UtcDateTime | None = Field(default=None, alias="lastConnected")
    last_error: UtcDateTime | None = Field(default=None, alias="lastError")
    error_message: str | None = Field(default=None, alias="errorMessage")
    num_tools: int = Field(alias="numTools")
    capabilities: str | None = None
    tools: str | None = None
    init_duration: int | None = Field(default=None, alias="initDuration")
    message: str
    updated_at: UtcDateTime | None = Field(default=None, alias="updatedAt")

    @classmethod
    def build(cls, server: MCPServer, *, succeeded: bool) -> Self:
        config = server.config.root
        return cls.model_validate(
            {
                "id": str(server.id),
                "serverName": server.server_name,
                "status": server.status,
                "lastConnected": server.last_connected,
                "lastError": server.last_error,
                "errorMessage": server.error_message,
                "numTools": count_tools(server),
                "capabilities": config.capabilities,
                "tools": config.tools,
                "initDuration": round(config.init_duration)
                if config.init_duration is not None
                else None,
                "message": "Server health check successful"
                if succeeded
                else "Server health check failed",
                "updatedAt": server.updated_at,
            }
        )
