"""Token figures for the admin statistics endpoint (one aggregation over ``tokens``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from packages.models import Token
from registry.services.token_types import API_TYPE_BY_STORED_TYPE, STORED_TYPES

# Stored record types (LibreChat's vocabulary) → the API's vocabulary (design 004); the one
# mapping lives in token_types (docs/credentials.md).
__all__ = ["API_TYPE_BY_STORED_TYPE", "TokenStatistics", "token_statistics"]


@dataclass(frozen=True)
class TokenStatistics:
    total_tokens: int = 0
    tokens_by_type: dict[str, int] = field(default_factory=dict)
    active_tokens: int = 0
    expired_tokens: int = 0


async def token_statistics(*, now: datetime | None = None) -> TokenStatistics:
    """Count MCP credential records by API type and by expiry, in one aggregation.

    Only the records the tokens API manages count: the external app keeps other records in
    the same collection (e-mail verification, password reset, often without a ``type``),
    which would swamp the figures and show up as a ``"None"`` type.
    """
    moment = now or datetime.now(UTC)
    pipeline: list[dict[str, Any]] = [
        {"$match": {"type": {"$in": list(STORED_TYPES)}}},
        {
            "$facet": {
                "by_type": [{"$group": {"_id": "$type", "count": {"$sum": 1}}}],
                "active": [{"$match": {"expiresAt": {"$gt": moment}}}, {"$count": "count"}],
                "total": [{"$count": "count"}],
            }
        },
    ]
    collection = Token.get_pymongo_collection()
    cursor = await collection.aggregate(pipeline)
    rows = await cursor.to_list(length=1)
    facet = rows[0] if rows else {}
    by_type: dict[str, int] = {}
    for row in facet.get("by_type", []):
        api_type = API_TYPE_BY_STORED_TYPE[row["_id"]]
        by_type[api_type] = by_type.get(api_type, 0) + int(row["count"])
    total = int(facet["total"][0]["count"]) if facet.get("total") else 0
    active = int(facet["active"][0]["count"]) if facet.get("active") else 0
    return TokenStatistics(
        total_tokens=total,
        tokens_by_type=by_type,
        active_tokens=active,
        expired_tokens=total - active,
    )
