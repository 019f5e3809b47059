"""Registry-owned tool catalog documents: ``tools``, ``tool_versions``, ``sync_runs``,
``sync_schedules``.

The catalog is the single source of truth for what each registered MCP server exposes (design
000 and 003): one ``Tool`` per (server, upstream tool name), its governance metadata and states;
``ToolVersion`` keeps every change; ``SyncRun`` records each synchronisation with an upstream;
``SyncSchedule`` holds the background worker's per-server due time and backoff state.

Field names are camelCase in MongoDB (aliases), snake_case in Python, as for the shared models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from beanie import Document, PydanticObjectId
from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, IndexModel

ExposureState = Literal["draft", "active", "disabled", "deleted"]
RegistrationState = Literal["selected", "unselected", "stale"]
MetadataSource = Literal["admin", "upstream", "heuristic", "default"]
SyncTrigger = Literal["register", "refresh", "manual", "scheduled", "list_changed", "import"]
SyncOutcome = Literal["running", "success", "error"]

EXPOSURE_STATES: tuple[ExposureState, ...] = ("draft", "active", "disabled", "deleted")
REGISTRATION_STATES: tuple[RegistrationState, ...] = ("selected", "unselected", "stale")
METADATA_FIELDS: tuple[str, ...] = (
    "read_only",
    "destructive",
    "human_approval_required",
    "cost_tier",
)


# The stored tools a server offers to clients (combine with its ``serverId``; a disabled
# server offers none). The one definition of "exposed", shared by the services and the gateway.
EXPOSED_FILTER: dict[str, Any] = {"exposureState": "active", "registrationState": "selected"}


def is_exposed_state(exposure: str | None, registration: str | None) -> bool:
    """Whether a tool in these states is offered (its server's status aside)."""
    return exposure == "active" and registration == "selected"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ToolMetadata(BaseModel):
    """Effective governance metadata of a tool (after admin > upstream > heuristic precedence)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    read_only: bool = False
    destructive: bool = False
    human_approval_required: bool = False
    cost_tier: str | None = None


class Tool(Document):
    """One tool of one registered server: upstream definition plus registry governance."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    server_id: PydanticObjectId = Field(alias="serverId")
    server_name: str = Field(alias="serverName")
    name: str
    display_name: str | None = Field(default=None, alias="displayName")
    title: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=dict, alias="inputSchema")
    output_schema: dict[str, Any] | None = Field(default=None, alias="outputSchema")
    annotations: dict[str, Any] | None = None
    """MCP annotations verbatim (``readOnlyHint``, ``destructiveHint``, ...)."""
    metadata: ToolMetadata = Field(default_factory=ToolMetadata)
    metadata_source: dict[str, MetadataSource] = Field(default_factory=dict, alias="metadataSource")
    """Where each effective ``metadata`` value came from."""
    admin_metadata: dict[str, Any] = Field(default_factory=dict, alias="adminMetadata")
    """Values an admin set explicitly; they win over upstream annotations and heuristics."""
    exposure_state: ExposureState = Field(default="active", alias="exposureState")
    registration_state: RegistrationState = Field(default="selected", alias="registrationState")
    allowed_roles: list[str] = Field(default_factory=list, alias="allowedRoles")
    allowed_groups: list[str] = Field(default_factory=list, alias="allowedGroups")
    tags: list[str] = Field(default_factory=list)
    discovery_hash: str = Field(alias="discoveryHash")
    last_discovered_at: datetime | None = Field(default=None, alias="lastDiscoveredAt")
    last_synced_at: datetime | None = Field(default=None, alias="lastSyncedAt")
    sync_error: str | None = Field(default=None, alias="syncError")
    version: int = 1
    created_at: datetime = Field(default_factory=_utcnow, alias="createdAt")
    updated_at: datetime = Field(default_factory=_utcnow, alias="updatedAt")

    class Settings:
        name = "tools"
        indexes = [
            IndexModel([("serverId", ASCENDING), ("name", ASCENDING)], unique=True),
            IndexModel(
                [
                    ("serverId", ASCENDING),
                    ("exposureState", ASCENDING),
                    ("registrationState", ASCENDING),
                ]
            ),
            IndexModel([("exposureState", ASCENDING)]),
            IndexModel([("registrationState", ASCENDING)]),
            IndexModel([("tags", ASCENDING)]),
            IndexModel([("serverName", ASCENDING), ("name", ASCENDING), ("_id", ASCENDING)]),
        ]


class ToolVersion(Document):
    """A snapshot of a tool after one change (by a sync or by a user)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    tool_id: PydanticObjectId = Field(alias="toolId")
    server_id: PydanticObjectId = Field(alias="serverId")
    version: int
    snapshot: dict[str, Any]
    changed_by: str = Field(alias="changedBy")
    """``"sync"`` or the id of the user who changed the tool."""
    changed_at: datetime = Field(default_factory=_utcnow, alias="changedAt")
    reason: str

    class Settings:
        name = "tool_versions"
        indexes = [
            IndexModel([("toolId", ASCENDING), ("version", DESCENDING), ("_id", DESCENDING)]),
        ]


class SyncCounts(BaseModel):
    model_config = ConfigDict(extra="allow")

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    reactivated: int = 0


class SyncRun(Document):
    """One synchronisation of a server's tools with its upstream."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    server_id: PydanticObjectId = Field(alias="serverId")
    server_name: str = Field(alias="serverName")
    trigger: SyncTrigger
    actor_id: str = Field(alias="actorId")
    started_at: datetime = Field(default_factory=_utcnow, alias="startedAt")
    finished_at: datetime | None = Field(default=None, alias="finishedAt")
    outcome: SyncOutcome = "running"
    counts: SyncCounts = Field(default_factory=SyncCounts)
    error: str | None = None

    class Settings:
        name = "sync_runs"
        indexes = [
            IndexModel([("serverId", ASCENDING), ("startedAt", DESCENDING)]),
            IndexModel([("outcome", ASCENDING), ("startedAt", DESCENDING)]),
            IndexModel([("startedAt", DESCENDING), ("_id", DESCENDING)]),
        ]


class SyncSchedule(Document):
    """The background sync worker's state for one server (due time, backoff, lease)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    server_id: PydanticObjectId = Field(alias="serverId")
    next_due_at: datetime = Field(alias="nextDueAt")
    interval_seconds: float | None = Field(default=None, alias="intervalSeconds")
    """Per-server override of ``REGISTRY_SYNC_INTERVAL_SECONDS`` (None = the global default)."""
    consecutive_failures: int = Field(default=0, alias="consecutiveFailures")
    lease_until: datetime | None = Field(default=None, alias="leaseUntil")
    """While set in the future, one worker (in one replica) owns the server's sync."""
    last_started_at: datetime | None = Field(default=None, alias="lastStartedAt")
    last_finished_at: datetime | None = Field(default=None, alias="lastFinishedAt")
    last_outcome: SyncOutcome | None = Field(default=None, alias="lastOutcome")
    last_error: str | None = Field(default=None, alias="lastError")

    class Settings:
        name = "sync_schedules"
        indexes = [
            IndexModel([("serverId", ASCENDING)], unique=True),
            IndexModel([("nextDueAt", ASCENDING)]),
        ]
