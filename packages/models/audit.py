"""Registry-owned audit trail: one document per mutation (collection ``audit_logs``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from beanie import Document
from pydantic import ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, IndexModel


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AuditLog(Document):
    """Who changed what, when. ``changes`` holds redacted before/after snapshots."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    action: str
    entity_type: str
    entity_id: str
    user_id: str
    changes: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    timestamp: datetime = Field(default_factory=_utcnow)

    class Settings:
        name = "audit_logs"
        indexes = [
            IndexModel([("entity_id", ASCENDING), ("timestamp", DESCENDING)]),
            IndexModel([("user_id", ASCENDING), ("timestamp", DESCENDING)]),
            IndexModel([("action", ASCENDING)]),
            IndexModel([("timestamp", DESCENDING)]),
        ]
