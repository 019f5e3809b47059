"""Small MCP helpers shared by the e2e tests: raw JSON-RPC messages and result unpacking."""

from __future__ import annotations

from typing import Any

from mcp.types import TextContent

PROTOCOL_VERSION = "2025-11-25"

# A raw ``initialize`` request, for tests that speak HTTP to the gateway without the SDK.
INITIALIZE_REQUEST: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}


def text_of(content: object) -> str:
    """The text of one tool-result content item (fails the test if it is not text)."""
    assert isinstance(content, TextContent)
    return content.text
