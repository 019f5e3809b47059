"""Discovery of a registered server: connect with its credentials and list its tools.

The one entry point for registration, refresh and catalog syncs. The stored API key is
decrypted here, only to build the upstream headers; per-user credentials come from the tokens
service. The outcome is expressed as the fields to store, so callers write it with one
``$set``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from bson import ObjectId

from packages.database.encryption import EncryptionError, decrypt_value
from packages.models import MCPServer
from registry.errors import InvalidRequestError, UpstreamError
from registry.gateway import (
    DiscoveredTool,
    build_auth_headers,
    discover,
    to_tool_function,
    tool_function_name,
    transport_for,
)
from registry.services.oauth_refresh import credential_with_refresh
from registry.services.server_documents import TOOLS_SEPARATOR, utcnow

log = structlog.get_logger("registry.discovery")


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
    credential_unavailable: bool = False
    """Failed before any upstream call: the credential discovery needs is missing."""
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


class CredentialUnavailableError(UpstreamError):
    """No credential usable for discovery (per-user key or OAuth token missing)."""

    code = "credential_unavailable"


async def _user_token(*, user_id: ObjectId, kind: str, server_name: str) -> str | None:
    # The tokens service owns the record layout (types, identifiers, expiry, decryption); an
    # expired OAuth access token is renewed with the user's refresh token when possible.
    credential = await credential_with_refresh(
        user_id=user_id, server_name=server_name, now=datetime.now(UTC), kinds={kind}
    )
    return credential.value if credential is not None else None


async def discovery_headers(server: MCPServer, *, user_id: ObjectId | None) -> dict[str, str]:
    """The headers discovery sends: static headers plus the server's credential.

    A key stored on the server (always for ``apiKey.source: admin``, optional for ``user``)
    is decrypted and used. Otherwise per-user API keys and OAuth tokens come from
    ``user_id``'s token records (the caller of a registration, refresh or manual sync; the
    author for background syncs). Raises CredentialUnavailableError when the credential is
    missing or a stored key does not decrypt.
    """
    config = server.config.root
    headers: dict[str, str] = dict(getattr(config, "headers", None) or {})
    name = server.server_name
    api_key = config.api_key
    owner = user_id or server.author
    if api_key is not None:
        key: str | None = None
        if api_key.key:
            try:
                key = decrypt_value(api_key.key)
            except EncryptionError as exc:
                raise CredentialUnavailableError(
                    "The stored API key cannot be decrypted with the configured CREDS_KEY"
                ) from exc
        elif api_key.source == "user":
            key = await _user_token(user_id=owner, kind="api_key", server_name=name)
        if not key:
            raise CredentialUnavailableError("No API key is available for this server")
        headers.update(
            build_auth_headers(
                authorization_type=api_key.authorization_type,
                key=key,
                custom_header=api_key.custom_header,
            )
        )
    elif config.requires_oauth or config.oauth is not None:
        token = await _user_token(user_id=owner, kind="oauth_access", server_name=name)
        if token is None:
            raise CredentialUnavailableError("No OAuth access token is available for this server")
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def discover_server(
    server: MCPServer, *, timeout_seconds: float, user_id: ObjectId | None = None
) -> DiscoveryOutcome:
    """Connect to ``server``'s upstream, initialize and list its tools.

    Never raises for upstream problems: an unreachable, slow, rejecting or non-MCP upstream,
    an unsupported transport or a missing credential (see ``discovery_headers``; ``user_id``
    is whose token records to use) give a failed outcome whose ``error_message`` is safe to
    store and show (it never contains a secret). The timeout is ``timeout_seconds``, or the
    server's ``initTimeout`` (ms) when that is shorter.
    """
    config = server.config.root
    transport = transport_for(config.type)
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
        headers = await discovery_headers(server, user_id=user_id)
    except CredentialUnavailableError as exc:
        log.warning("server_discovery_failed", server_name=server.server_name, error=exc.message)
        return DiscoveryOutcome(
            succeeded=False, at=utcnow(), error_message=exc.message, credential_unavailable=True
        )
    try:
        result = await discover(
            url=url, transport=transport, headers=headers, timeout_seconds=timeout_seconds
        )
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
