"""The API's token vocabulary and how it maps onto the records the external app stores.

The API speaks design 004's types; the ``tokens`` collection holds what LibreChat's
``MCPTokenStorage`` writes, so a record stored by either app is usable by the other:

=============  =====================  ==============================
API ``type``   stored ``type``        stored ``identifier``
=============  =====================  ==============================
oauth_access   ``mcp_oauth``          ``mcp:{serverName}``
oauth_refresh  ``mcp_oauth_refresh``  ``mcp:{serverName}:refresh``
oauth_client   ``mcp_oauth_client``   ``mcp:{serverName}:client``
api_key        ``mcp_api_key``        ``mcp:{serverName}:api_key``
=============  =====================  ==============================

LibreChat has no per-user API-key record for MCP servers. API keys get their own type *and*
their own identifier suffix because LibreChat looks some records up by ``identifier`` alone
(``findToken({userId, identifier: 'mcp:github'})`` when it decides whether a user is
authenticated): an API key stored as ``mcp:github`` would look like an OAuth token to it.

The API's ``identifier`` is the server name (``github``); an already-prefixed identifier
(``mcp:github`` or ``mcp:github:refresh`` for a refresh record) is accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from registry.errors import InvalidRequestError

ApiTokenType = Literal["oauth_access", "oauth_refresh", "oauth_client", "api_key"]
API_TOKEN_TYPES: tuple[ApiTokenType, ...] = get_args(ApiTokenType)

IDENTIFIER_PREFIX = "mcp:"


@dataclass(frozen=True)
class StoredKind:
    """How one API token type is stored: the record ``type`` and the identifier suffix."""

    api_type: ApiTokenType
    stored_type: str
    suffix: str

    def stored_identifier(self, server_name: str) -> str:
        return f"{IDENTIFIER_PREFIX}{server_name}{self.suffix}"


_KINDS: tuple[StoredKind, ...] = (
    StoredKind("oauth_access", "mcp_oauth", ""),
    StoredKind("oauth_refresh", "mcp_oauth_refresh", ":refresh"),
    StoredKind("oauth_client", "mcp_oauth_client", ":client"),
    StoredKind("api_key", "mcp_api_key", ":api_key"),
)
KIND_BY_API_TYPE: dict[str, StoredKind] = {kind.api_type: kind for kind in _KINDS}
KIND_BY_STORED_TYPE: dict[str, StoredKind] = {kind.stored_type: kind for kind in _KINDS}
STORED_TYPES: tuple[str, ...] = tuple(kind.stored_type for kind in _KINDS)

# Stored record types → the API's vocabulary (the admin statistics use this too).
API_TYPE_BY_STORED_TYPE: dict[str, str] = {kind.stored_type: kind.api_type for kind in _KINDS}

ACCESS = KIND_BY_API_TYPE["oauth_access"]
REFRESH = KIND_BY_API_TYPE["oauth_refresh"]
API_KEY = KIND_BY_API_TYPE["api_key"]
CLIENT = KIND_BY_API_TYPE["oauth_client"]


def server_name_from(identifier: str, kind: StoredKind) -> str:
    """The server name an API ``identifier`` names for ``kind``.

    Accepts ``github`` and ``mcp:github`` (plus the kind's suffix, e.g.
    ``mcp:github:refresh``). Raises InvalidRequestError for an empty name or one containing
    ``:`` (the separator of the stored form).
    """
    name = identifier.strip()
    if name.startswith(IDENTIFIER_PREFIX):
        name = name[len(IDENTIFIER_PREFIX) :]
        if kind.suffix and name.endswith(kind.suffix):
            name = name[: -len(kind.suffix)]
    # Control characters and spaces name no server and would be stored as they are.
    if not name or ":" in name or any(char.isspace() or not char.isprintable() for char in name):
        raise InvalidRequestError(
            "identifier must be a server name or 'mcp:{serverName}' "
            f"(for {kind.api_type}: 'mcp:{{serverName}}{kind.suffix}')",
            resource="token",
        )
    return name


def api_identifier(stored_identifier: str | None, kind: StoredKind) -> str | None:
    """The API form (server name) of a stored identifier; other spellings are returned as is."""
    if stored_identifier is None:
        return None
    prefix_and_suffix = len(IDENTIFIER_PREFIX) + len(kind.suffix)
    if (
        stored_identifier.startswith(IDENTIFIER_PREFIX)
        and stored_identifier.endswith(kind.suffix)
        and len(stored_identifier) > prefix_and_suffix
    ):
        name = stored_identifier[len(IDENTIFIER_PREFIX) : len(stored_identifier) - len(kind.suffix)]
        if ":" not in name:
            return name
    return stored_identifier


def stored_identifiers_for(server_name: str) -> list[str]:
    """Every stored identifier a server's records may carry (for filtering by server)."""
    return [kind.stored_identifier(server_name) for kind in _KINDS]
