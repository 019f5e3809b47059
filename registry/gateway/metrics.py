"""Prometheus metrics of the gateway, registered on ``registry.metrics.REGISTRY``.

Label values are bounded: ``server`` is a registered server name, ``tool`` a tool the server
listed at discovery (anything else is ``_other``), ``method`` an MCP method name or ``_other``.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from registry.metrics import REGISTRY

GATEWAY_CALLS = Counter(
    "mcp_gateway_calls_total",
    "MCP messages relayed by the gateway, by outcome.",
    ["server", "method", "tool", "outcome"],
    registry=REGISTRY,
)

GATEWAY_CALL_SECONDS = Histogram(
    "mcp_gateway_call_duration_seconds",
    "Wall time of MCP messages relayed by the gateway (until the response is complete).",
    ["server", "method", "tool"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

GATEWAY_SESSIONS = Counter(
    "mcp_gateway_sessions_total",
    "Gateway sessions opened, by server and outcome.",
    ["server", "outcome"],
    registry=REGISTRY,
)

KNOWN_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
        "GET",
        "POST",
        "DELETE",
        "response",
    }
)
