"""Prometheus metrics of the service (one process-wide registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Latency of HTTP requests served by the registry API.",
    ["method", "route", "status"],
    registry=REGISTRY,
)

SERVER_OPERATIONS = Counter(
    "mcp_server_operations_total",
    "Server registry operations by outcome.",
    ["operation", "status"],
    registry=REGISTRY,
)
