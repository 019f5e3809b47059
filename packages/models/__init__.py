"""Shared MongoDB models of the jarvis-api collections (``mcpservers``, ``tokens``).

The classes come from ``packages.models._generated``, which ``scripts/generate_schemas.py``
writes from the pinned jarvis-api JSON Schemas (see docs/schemas.md). Never edit the generated
code; extend a model by subclassing it in a sibling module.
"""

from packages.models._generated import (
    ApiKeyConfig,
    CustomUserVar,
    MCPServer,
    OAuthConfig,
    SSETransport,
    StdioTransport,
    StreamableHTTPTransport,
    Token,
    ToolFunction,
    ToolFunctionDefinition,
    WebSocketTransport,
)
from packages.models._generated import MCPOptions as MCPConfig
from packages.models._generated import __version__ as SCHEMA_VERSION  # noqa: N812

__all__ = [
    "SCHEMA_VERSION",
    "ApiKeyConfig",
    "CustomUserVar",
    "MCPConfig",
    "MCPServer",
    "OAuthConfig",
    "SSETransport",
    "StdioTransport",
    "StreamableHTTPTransport",
    "Token",
    "ToolFunction",
    "ToolFunctionDefinition",
    "WebSocketTransport",
]
