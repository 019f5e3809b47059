"""System-wide statistics for admins (design 004 "Admin Endpoints", ``GET /servers/stats``).

Server figures come from one ``$facet`` aggregation over ``mcpservers``; token figures from
``registry.services.token_stats``; ``active_users`` from one aggregation that unions server
authors with the holders of unexpired MCP tokens.

Definitions (also in docs/admin.md):

- ``servers_by_status``: a document without ``status`` counts as ``active`` (the shared
  schema's default).
- ``servers_by_transport``: ``config.type``; ``http`` is the schema's alias of
  ``streamable-http`` and is counted as such.
- ``total_tools``: the sum of ``numTools`` (missing counts as 0).
- ``active_users``: distinct user ids that author at least one server or hold at least one
  unexpired MCP token (OAuth access/refresh/client or API key record).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from packages.models import MCPServer, Token
from registry.services.token_stats import API_TYPE_BY_STORED_TYPE, token_statistics

KNOWN_SCOPES = ("shared_app", "shared_user", "private_user")
KNOWN_STATUSES = ("active", "inactive", "error")
KNOWN_TRANSPORTS = ("streamable-http", "sse")
KNOWN_TOKEN_TYPES = ("oauth_access", "oauth_refresh", "api_key")
UNKNOWN = "unknown"

_TRANSPORT_ALIASES = {"http": "streamable-http"}


@dataclass(frozen=True)
class ServerStatistics:
    total_servers: int
    servers_by_scope: dict[str, int]
    servers_by_status: dict[str, int]
    servers_by_transport: dict[str, int]
    total_tokens: int
    tokens_by_type: dict[str, int]
    active_tokens: int
    expired_tokens: int
    active_users: int
    total_tools: int


def _group_by(field: str, *, default: str | None = None) -> list[dict[str, Any]]:
    key: Any = f"${field}" if default is None else {"$ifNull": [f"${field}", default]}
    return [{"$group": {"_id": key, "count": {"$sum": 1}}}]


def _counts(
    rows: list[dict[str, Any]], *, known: tuple[str, ...], aliases: dict[str, str] | None = None
) -> dict[str, int]:
    """Known keys always present (0 when absent); other values kept under their own name."""
    counts = dict.fromkeys(known, 0)
    for row in rows:
        raw = row["_id"]
        name = UNKNOWN if raw is None else str(raw)
        name = (aliases or {}).get(name, name)
        counts[name] = counts.get(name, 0) + int(row["count"])
    return counts


def _first_int(rows: list[dict[str, Any]], field: str) -> int:
    return int(rows[0][field]) if rows else 0


async def _server_figures() -> dict[str, Any]:
    pipeline: list[dict[str, Any]] = [
        {
            "$facet": {
                "total": [{"$count": "count"}],
                "by_scope": _group_by("scope"),
                "by_status": _group_by("status", default="active"),
                "by_transport": _group_by("config.type"),
                "tools": [
                    {"$group": {"_id": None, "sum": {"$sum": {"$ifNull": ["$numTools", 0]}}}}
                ],
            }
        }
    ]
    cursor = await MCPServer.get_pymongo_collection().aggregate(pipeline)
    rows = await cursor.to_list(length=1)
    facet: dict[str, Any] = rows[0] if rows else {}
    return facet


async def _active_user_count(moment: datetime) -> int:
    token_collection = Token.get_pymongo_collection().name
    pipeline: list[dict[str, Any]] = [
        {"$match": {"author": {"$ne": None}}},
        {"$project": {"_id": 0, "user": "$author"}},
        {
            "$unionWith": {
                "coll": token_collection,
                "pipeline": [
                    {
                        "$match": {
                            "type": {"$in": sorted(API_TYPE_BY_STORED_TYPE)},
                            "expiresAt": {"$gt": moment},
                            "userId": {"$ne": None},
                        }
                    },
                    {"$project": {"_id": 0, "user": "$userId"}},
                ],
            }
        },
        {"$group": {"_id": "$user"}},
        {"$count": "count"},
    ]
    cursor = await MCPServer.get_pymongo_collection().aggregate(pipeline)
    rows = await cursor.to_list(length=1)
    return _first_int(rows, "count")


async def server_statistics(*, now: datetime | None = None) -> ServerStatistics:
    """Collect the admin statistics of design 004.

    Every known scope, status, transport and token type is present, with 0 when nothing
    matches; values outside the known sets (written by another app) keep their own key.
    Authorization is the caller's job (the route requires an admin).
    """
    moment = now or datetime.now(UTC)
    facet = await _server_figures()
    tokens = await token_statistics(now=moment)
    tokens_by_type = dict.fromkeys(KNOWN_TOKEN_TYPES, 0)
    tokens_by_type.update(tokens.tokens_by_type)
    return ServerStatistics(
        total_servers=_first_int(facet.get("total", []), "count"),
        servers_by_scope=_counts(facet.get("by_scope", []), known=KNOWN_SCOPES),
        servers_by_status=_counts(facet.get("by_status", []), known=KNOWN_STATUSES),
        servers_by_transport=_counts(
            facet.get("by_transport", []), known=KNOWN_TRANSPORTS, aliases=_TRANSPORT_ALIASES
        ),
        total_tokens=tokens.total_tokens,
        tokens_by_type=tokens_by_type,
        active_tokens=tokens.active_tokens,
        expired_tokens=tokens.expired_tokens,
        active_users=await _active_user_count(moment),
        total_tools=_first_int(facet.get("tools", []), "sum"),
    )
