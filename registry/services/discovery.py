"""Discovery of a registered server: connect with its stored credentials and list its tools.

The stored API key is decrypted here and nowhere else, only to build the upstream headers.
The outcome is expressed as the fields to store, so callers write it with one ``$set``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from packages.database.encryption import EncryptionError, decrypt_value
from packages.models import MCPServer
from registry.errors import InvalidRequestError, UpstreamError
from registry.gateway import (
    DiscoveredTool,
    UpstreamTransport,
    build_auth_headers,
    discover,
    to_tool_function,
    tool_function_name,
)
from registry.services.server_documents import utcnow

log = structlog.get_logger("registry.discovery")

# Tool names are joined without spaces, as the external app's own documents store them
# ("a,b,c"); readers split on "," and strip, so "a, b" written by others reads the same.
TOOLS_SEPARATOR = ","


@dataclass(frozen=True)
class DiscoveryOutcome:
    """What one discovery attempt found, as the stored fields it changes."""

    succeeded: bool
    at: datetime
    capabilities: str | None = None
    tools: str | None = None
    tool_functions: dict[str, Any] = field(default_factory=dict)
    num_tools: int = 0
    init_duration_ms: int | None = None
    error_message: str | None = None
    discovered: tuple[DiscoveredTool, ...] = ()
    """The tools as listed, for the tool catalog (``registry.services.catalog_sync``)."""

    def updates(
        self, *, current_status: str | None, include_tools: bool = True
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Dotted ``$set``/``$unset`` paths that store this outcome.

        Success stores the discovery results, ``lastConnected`` and clears the error fields;
        the status becomes ``active`` unless the server was switched off (``inactive`` stays).
        Failure keeps the previous tool list and records ``status: error``, ``lastError`` and
        ``errorMessage``. ``include_tools=False`` leaves ``config.tools``/``toolFunctions``/
        ``numTools`` out: the tool catalog writes them (exposed tools only).
        """
        if not self.succeeded:
            return (
                {"status": "error", "lastError": self.at, "errorMessage": self.error_message},
                {},
            )
        status = "inactive" if current_status == "inactive" else "active"
        to_set: dict[str, Any] = {
            "config.capabilities": self.capabilities,
            "config.tools": self.tools,
            "config.toolFunctions": self.tool_functions,
            "config.initDuration": self.init_duration_ms,
            "numTools": self.num_tools,
            "lastConnected": self.at,
            "status": status,
        }
        if not include_tools:
            for path in ("config.tools", "config.toolFunctions", "numTools"):
                del to_set[path]
        return to_set, {"lastError": "", "errorMessage": ""}


def _transport(config_type: str) -> UpstreamTransport | None:
    if config_type == "sse":
        return "sse"
    if config_type in ("streamable-http", "http"):
        return "streamable-http"
    return None


def _headers(server: MCPServer) -> dict[str, str]:
    """Static headers, then the API key header (decrypted here, never stored or logged)."""
    config = server.config.root
    headers = dict(getattr(config, "headers", None) or {})
    api_key = config.api_key
    if api_key is not None and api_key.key:
        key = decrypt_value(api_key.key)
        headers.update(
            build_auth_headers(
                authorization_type=api_key.authorization_type,
                key=key,
                custom_header=api_key.custom_header,
            )
        )
    return headers


async def discover_server(server: MCPServer, *, timeout_seconds: float) -> DiscoveryOutcome:
    """Connect to ``server``'s upstream, initialize and list its tools.

    Never raises for upstream problems: an unreachable, slow, rejecting or non-MCP upstream,
    an unsupported transport or an undecryptable stored key give a failed outcome whose
    ``error_message`` is safe to store and show (it never contains a secret). The timeout is
    ``timeout_seconds``, or the server's ``initTimeout`` (ms) when that is shorter.
    """
    config = server.config.root
    transport = _transport(config.type)
    url = getattr(config, "url", None)
    if transport is None or not url:
        return DiscoveryOutcome(
            succeeded=False,
            at=utcnow(),
            error_message=f"Transport {config.type!r} is not supported for discovery",
        )
    if config.init_timeout:
        timeout_seconds = min(timeout_seconds, config.init_timeout / 1000)
    try:
        headers = _headers(server)
        result = await discover(
            url=url, transport=transport, headers=headers, timeout_seconds=timeout_seconds
        )
    except EncryptionError:
        message = "The stored API key cannot be decrypted with the configured CREDS_KEY"
        log.warning("server_discovery_failed", server_name=server.server_name, error=message)
        return DiscoveryOutcome(succeeded=False, at=utcnow(), error_message=message)
    except (UpstreamError, InvalidRequestError) as exc:
        log.info("server_discovery_failed", server_name=server.server_name, error=exc.code)
        return DiscoveryOutcome(succeeded=False, at=utcnow(), error_message=exc.message)
    name = server.server_name
    return DiscoveryOutcome(
        succeeded=True,
        at=utcnow(),
        capabilities=json.dumps(result.capabilities, separators=(",", ":")),
        tools=TOOLS_SEPARATOR.join(tool.name for tool in result.tools),
        tool_functions={
            tool_function_name(tool.name, name): to_tool_function(tool, name)
            for tool in result.tools
        },
        num_tools=len(result.tools),
        init_duration_ms=result.init_duration_ms,
        discovered=result.tools,
    )
