"""``GET /api/v1/audit-logs``: the audit trail for admins (design 004 "Audit Logging")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from packages.models.audit import AuditLog
from registry.api.deps import AdminPrincipal
from registry.api.errors import responses
from registry.api.schemas.pagination import Page, Pagination, PerPage
from registry.services.audit_queries import AuditQuery, list_audit_logs

router = APIRouter(prefix="/audit-logs", tags=["audit"])

_FILTER = Query(min_length=1, max_length=200)


class AuditLogPublic(BaseModel):
    """One audit entry; ``changes`` holds before/after snapshots with secrets as ``***``."""

    model_config = ConfigDict(frozen=True)

    id: str
    action: str
    entity_type: str
    entity_id: str
    user_id: str
    changes: dict[str, Any]
    request_id: str | None
    timestamp: datetime

    @classmethod
    def from_document(cls, entry: AuditLog) -> AuditLogPublic:
        return cls(
            id=str(entry.id),
            action=entry.action,
            entity_type=entry.entity_type,
            entity_id=str(entry.entity_id),
            user_id=str(entry.user_id),
            changes=entry.changes,
            request_id=entry.request_id,
            timestamp=entry.timestamp,
        )


class AuditLogList(BaseModel):
    audit_logs: list[AuditLogPublic]
    pagination: Pagination


@router.get(
    "",
    summary="List audit entries, newest first (admins only)",
    response_model=AuditLogList,
    responses=responses(401, 403, 422),
)
async def list_audit_entries(
    admin: AdminPrincipal,
    entity_id: Annotated[str | None, _FILTER] = None,
    user_id: Annotated[str | None, _FILTER] = None,
    action: Annotated[str | None, _FILTER] = None,
    entity_type: Annotated[str | None, _FILTER] = None,
    page: Page = 1,
    per_page: PerPage = 20,
) -> AuditLogList:
    query = AuditQuery(entity_id=entity_id, user_id=user_id, action=action, entity_type=entity_type)
    result = await list_audit_logs(query=query, page=page, per_page=per_page)
    return AuditLogList(
        audit_logs=[AuditLogPublic.from_document(entry) for entry in result.items],
        pagination=Pagination.of(result),
    )
