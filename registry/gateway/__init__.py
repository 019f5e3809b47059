"""The only layer that talks to upstream MCP servers (``mcp`` client SDK, outbound HTTP)."""

from registry.gateway.upstream import (
    MAX_TOOL_PAGES,
    AuthorizationType,
    DiscoveredTool,
    DiscoveryResult,
    UpstreamTransport,
    build_auth_headers,
    discover,
    display_url,
    to_tool_function,
    tool_function_name,
    transport_for,
)

__all__ = [
    "MAX_TOOL_PAGES",
    "AuthorizationType",
    "DiscoveredTool",
    "DiscoveryResult",
    "UpstreamTransport",
    "build_auth_headers",
    "discover",
    "display_url",
    "to_tool_function",
    "tool_function_name",
    "transport_for",
]
