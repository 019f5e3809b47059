"""Reading the audit trail: filtered, paginated, newest first (admins only, checked by the API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from beanie import SortDirection
from bson import ObjectId

from packages.models.audit import AuditLog
from registry.services.pagination import PageWindow


@dataclass(frozen=True)
class AuditQuery:
    """Exact-match filters; ``None`` means "any"."""

    entity_id: str | None = None
    user_id: str | None = None
    action: str | None = None
    entity_type: str | None = None

    def as_filter(self) -> dict[str, Any]:
        fields = {
            "entity_id": _stored_id(self.entity_id),
            "user_id": _stored_id(self.user_id),
            "action": self.action,
            "entity_type": self.entity_type,
        }
        return {name: value for name, value in fields.items() if value is not None}


def _stored_id(value: str | None) -> ObjectId | str | None:
    # Ids are stored as ObjectIds (so any hex spelling finds them); other subjects as text.
    if value is not None and len(value) == 24 and ObjectId.is_valid(value):
        return ObjectId(value)
    return value


@dataclass(frozen=True, kw_only=True)
class AuditPage(PageWindow):
    items: list[AuditLog]


async def list_audit_logs(*, query: AuditQuery, page: int, per_page: int) -> AuditPage:
    """One page of audit entries matching ``query``, newest first.

    Entries with equal timestamps are ordered by id (descending), so pages never overlap.
    ``page`` starts at 1; a page past the end is empty. Values are matched exactly (they are
    never interpreted as operators: the filter is built from plain strings).
    """
    if page < 1 or per_page < 1:
        raise ValueError("page and per_page start at 1")
    mongo_filter = query.as_filter()
    total = await AuditLog.find(mongo_filter).count()
    items = (
        await AuditLog.find(mongo_filter)
        .sort([("timestamp", SortDirection.DESCENDING), ("_id", SortDirection.DESCENDING)])
        .skip((page - 1) * per_page)
        .limit(per_page)
        .to_list()
    )
    return AuditPage(items=items, total=total, page=page, per_page=per_page)
