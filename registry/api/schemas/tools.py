"""Request and response bodies of the tool catalog and sync endpoints (docs/catalog.md).

Fields are camelCase on the wire, like the server endpoints (``serverId``, ``exposureState``);
the governance ``metadata`` keeps the issue's snake_case names (``read_only``, ...).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from packages.models.tools import SyncRun, Tool, ToolVersion
from registry.api.schemas.pagination import Pagination
from registry.services.sync_schedules import (
    MAX_INTERVAL_SECONDS,
    MIN_INTERVAL_SECONDS,
    ScheduleView,
)
from registry.timestamps import as_utc


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ToolMetadataUpdate(BaseModel):
    """Admin overrides; ``null`` removes an override (the upstream or heuristic value returns)."""

    model_config = ConfigDict(extra="forbid")

    read_only: bool | None = None
    destructive: bool | None = None
    human_approval_required: bool | None = None
    cost_tier: Literal["low", "medium", "high"] | None = None


class ToolUpdate(_Camel):
    """``PATCH /api/v1/tools/{id}``: only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    exposure_state: Literal["draft", "active", "disabled"] | None = None
    registration_state: Literal["selected", "unselected"] | None = None
    display_name: str | None = Field(default=None, max_length=200)
    tags: list[str] | None = Field(default=None, max_length=50)
    allowed_roles: list[str] | None = Field(default=None, max_length=50)
    allowed_groups: list[str] | None = Field(default=None, max_length=200)
    metadata: ToolMetadataUpdate | None = None
    updated_at: Annotated[AwareDatetime, AfterValidator(as_utc)] | None = None
    """Optimistic concurrency: the ``updatedAt`` the caller last read (409 if it changed)."""


class ToolMetadataPublic(BaseModel):
    read_only: bool
    destructive: bool
    human_approval_required: bool
    cost_tier: str | None


class ToolPublic(_Camel):
    """One catalog tool."""

    id: str
    server_id: str
    server_name: str
    name: str
    display_name: str | None
    title: str | None
    description: str | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, Any] | None
    metadata: ToolMetadataPublic
    metadata_source: dict[str, str]
    admin_metadata: dict[str, Any]
    exposure_state: str
    registration_state: str
    allowed_roles: list[str]
    allowed_groups: list[str]
    tags: list[str]
    discovery_hash: str
    last_discovered_at: datetime | None
    last_synced_at: datetime | None
    sync_error: str | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_document(cls, tool: Tool) -> ToolPublic:
        return cls(
            id=str(tool.id),
            server_id=str(tool.server_id),
            server_name=tool.server_name,
            name=tool.name,
            display_name=tool.display_name,
            title=tool.title,
            description=tool.description,
            input_schema=tool.input_schema,
            output_schema=tool.output_schema,
            annotations=tool.annotations,
            metadata=ToolMetadataPublic(**tool.metadata.model_dump()),
            metadata_source=dict(tool.metadata_source),
            admin_metadata=dict(tool.admin_metadata),
            exposure_state=tool.exposure_state,
            registration_state=tool.registration_state,
            allowed_roles=tool.allowed_roles,
            allowed_groups=tool.allowed_groups,
            tags=tool.tags,
            discovery_hash=tool.discovery_hash,
            last_discovered_at=tool.last_discovered_at,
            last_synced_at=tool.last_synced_at,
            sync_error=tool.sync_error,
            version=tool.version,
            created_at=tool.created_at,
            updated_at=tool.updated_at,
        )


class ToolList(BaseModel):
    tools: list[ToolPublic]
    pagination: Pagination


class ToolVersionPublic(_Camel):
    id: str
    tool_id: str
    version: int
    snapshot: dict[str, Any]
    changed_by: str
    changed_at: datetime
    reason: str

    @classmethod
    def from_document(cls, entry: ToolVersion) -> ToolVersionPublic:
        return cls(
            id=str(entry.id),
            tool_id=str(entry.tool_id),
            version=entry.version,
            snapshot=entry.snapshot,
            changed_by=entry.changed_by,
            changed_at=entry.changed_at,
            reason=entry.reason,
        )


class ToolHistory(BaseModel):
    versions: list[ToolVersionPublic]
    pagination: Pagination


class SyncCountsPublic(BaseModel):
    added: int
    updated: int
    unchanged: int
    stale: int
    reactivated: int


class SyncRunPublic(_Camel):
    """One synchronisation of a server's tools."""

    id: str
    server_id: str
    server_name: str
    trigger: str
    actor_id: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    counts: SyncCountsPublic
    error: str | None

    @classmethod
    def from_document(cls, run: SyncRun) -> SyncRunPublic:
        return cls(
            id=str(run.id),
            server_id=str(run.server_id),
            server_name=run.server_name,
            trigger=run.trigger,
            actor_id=run.actor_id,
            started_at=run.started_at,
            finished_at=run.finished_at,
            outcome=run.outcome,
            counts=SyncCountsPublic(**run.counts.model_dump()),
            error=run.error,
        )


class SyncRunList(BaseModel):
    sync_runs: list[SyncRunPublic]
    pagination: Pagination


class SyncScheduleUpdate(_Camel):
    """``PUT /api/v1/sync/servers/{id}/schedule``: the server's own sync interval."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    interval_seconds: float | None = Field(ge=MIN_INTERVAL_SECONDS, le=MAX_INTERVAL_SECONDS)
    """Seconds between background syncs of this server; ``null``: the global default."""


class SyncSchedulePublic(_Camel):
    """A server's background sync schedule."""

    server_id: str
    interval_seconds: float | None
    effective_interval_seconds: float
    next_due_at: datetime | None
    consecutive_failures: int
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_outcome: str | None
    last_error: str | None

    @classmethod
    def from_view(cls, view: ScheduleView) -> SyncSchedulePublic:
        # The service's view has exactly these fields; the schema only adds camelCase names.
        return cls.model_validate(view, from_attributes=True)
