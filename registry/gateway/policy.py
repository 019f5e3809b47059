"""Per-tool policy hook of the gateway: allow-all until the tool catalog (issue 6) governs it.

Both functions run on the per-call path, so they must stay cheap (in-memory lookups only).
"""

from __future__ import annotations

from typing import Any

from registry.auth import UserContext
from registry.gateway.lookup import ResolvedServer


async def filter_tools(
    *, user: UserContext, server: ResolvedServer, tools: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The tools of a ``tools/list`` result that ``user`` may see (all of them for now)."""
    return tools


async def tool_denial(*, user: UserContext, server: ResolvedServer, tool: str) -> str | None:
    """Why ``user`` may not call ``tool`` on ``server``, or None when the call is allowed.

    A denied call is answered with a JSON-RPC error and never reaches the upstream.
    """
    return None
