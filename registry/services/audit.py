"""Recording mutations in the audit trail, with secrets redacted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from packages.models.audit import AuditLog
from registry.auth import UserContext

REDACTED = "***"
_SECRET_FIELDS = frozenset(
    {
        "key",
        "client_secret",
        "token",
        "apikey_key",
        "password",
        "secret",
        "access_token",
        "refresh_token",
        "new_access_token",
        "new_refresh_token",
    }
)


def redact(value: Any) -> Any:
    """A deep copy of ``value`` with every secret-named field replaced by ``***``."""
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if str(k).lower() in _SECRET_FIELDS and v is not None else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


async def record_audit(
    *,
    action: str,
    entity_type: str,
    entity_id: str,
    actor: UserContext | str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditLog:
    """Insert one audit entry; ``before``/``after`` are redacted before they are stored.

    ``actor`` is the caller, or the id of a system actor (``"sync"`` for the sync worker).
    """
    context = structlog.contextvars.get_contextvars()
    entry = AuditLog(
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        user_id=actor if isinstance(actor, str) else actor.user_id,
        changes={
            "before": redact(before) if before is not None else None,
            "after": redact(after) if after is not None else None,
        },
        request_id=context.get("request_id"),
    )
    await entry.insert()
    return entry
