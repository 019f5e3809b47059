"""Small MCP helpers shared by the e2e tests: raw JSON-RPC messages and result unpacking."""

from __future__ import annotations

from typing import Any

import httpx
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


# What a Streamable HTTP client must accept.
ACCEPT = {"accept": "application/json, text/event-stream"}


async def raw_initialize(url: str, headers: dict[str, str]) -> httpx.Response:
    """POST a raw ``initialize`` to ``url`` (an MCP endpoint) with ``headers``."""
    async with httpx.AsyncClient(headers={**headers, **ACCEPT}) as http:
        return await http.post(url, json=INITIALIZE_REQUEST)


def text_of(content: object) -> str:
    """The text of one tool-result content item (fails the test if it is not text)."""
    assert isinstance(content, TextContent)
    return content.text
