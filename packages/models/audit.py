"""Registry-owned audit trail: one document per mutation (collection ``audit_logs``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from beanie import Document, PydanticObjectId
from pydantic import ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, IndexModel


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AuditLog(Document):
    """Who changed what, when. ``changes`` holds redacted before/after snapshots.

    ``entity_id`` and ``user_id`` are ObjectIds, as design 004 has them; a user whose subject
    is not an ObjectId (an operator's ``sub`` such as ``ci-bot``) is kept as text.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    action: str
    entity_type: str
    entity_id: PydanticObjectId | str
    user_id: PydanticObjectId | str
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
