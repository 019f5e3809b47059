"""How server fields map onto ``mcpservers`` documents (the shared schema) and back.

The service boundary speaks ``ServerFields`` (snake_case, as the API schemas name them); this
module turns them into the stored shape: ``config`` nested as MCPOptions with camelCase keys,
``author`` an ObjectId, dates as BSON dates (millisecond precision), ``__v: 0`` on insert, and
no nulls for unset config fields (the external app validates ``config`` with zod, where an
optional key may be missing but not null). Updates are dotted ``$set``/``$unset`` paths so that
fields the external app wrote and we do not model survive.

Secrets (``apiKey.key``, ``oauth.client_secret``) are encrypted here, on the way in; a value
that is omitted or sent back masked (``***``) keeps the stored ciphertext.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict

from bson import ObjectId

from packages.database.encryption import encrypt_value
from packages.models import MCPServer
from registry.timestamps import utc_iso

MASK = "***"

Transport = Literal["streamable-http", "sse"]

# config.tools joins tool names without spaces, as the external app's own documents store them
# ("a,b,c"); readers split on "," and strip, so "a, b" written by others reads the same.
TOOLS_SEPARATOR = ","


class ApiKeyFields(TypedDict, total=False):
    key: str | None
    source: Literal["admin", "user"]
    authorization_type: Literal["bearer", "basic", "custom"]
    custom_header: str | None


class ServerFields(TypedDict, total=False):
    """Validated server fields as the API hands them to the service (snake_case names).

    On create every key is present (``None`` = not given); on update only the keys the caller
    sent are present, and ``None`` removes an optional field.
    """

    server_name: str
    title: str | None
    description: str | None
    type: Transport
    url: str
    api_key: ApiKeyFields | None
    oauth: dict[str, object] | None
    requires_oauth: bool
    scope: str
    tags: list[str]
    path: str | None
    timeout: int | None
    init_timeout: int | None
    headers: dict[str, str] | None
    status: Literal["active", "inactive"]


# ServerFields key -> stored path, for the plain (non-secret, non-object) fields.
_CONFIG_PATHS: dict[str, str] = {
    "title": "config.title",
    "description": "config.description",
    "type": "config.type",
    "url": "config.url",
    "requires_oauth": "config.requiresOAuth",
    "timeout": "config.timeout",
    "init_timeout": "config.initTimeout",
}
_ROOT_PATHS: dict[str, str] = {
    "scope": "scope",
    "tags": "tags",
    "path": "path",
    "status": "status",
}

# Changing any of these makes the stored discovery results and live connections stale.
CONNECTION_FIELDS = frozenset({"type", "url", "api_key", "oauth", "headers", "requires_oauth"})


def to_bson_time(value: datetime) -> datetime:
    """``value`` in UTC truncated to milliseconds, exactly as a BSON date stores it."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def utcnow() -> datetime:
    return to_bson_time(datetime.now(UTC))


def next_updated_at(previous: datetime | None) -> datetime:
    """A new ``updatedAt`` strictly later than ``previous`` at millisecond precision.

    Two updates within the same millisecond would otherwise write equal stamps, and a client
    holding the first stamp could overwrite the second change unnoticed.
    """
    now = utcnow()
    if previous is None:
        return now
    floor = to_bson_time(previous) + timedelta(milliseconds=1)
    return max(now, floor)


def default_path(server_name: str) -> str:
    return f"/mcp/{server_name}"


def _api_key_document(api_key: ApiKeyFields, *, stored_key: str | None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "source": api_key["source"],
        "authorization_type": api_key["authorization_type"],
    }
    if api_key.get("authorization_type") == "custom" and api_key.get("custom_header"):
        document["custom_header"] = api_key["custom_header"]
    key = api_key.get("key")
    if key and key != MASK:
        document["key"] = encrypt_value(key)
    elif stored_key:
        document["key"] = stored_key
    return document


def _oauth_document(oauth: Mapping[str, object], *, stored_secret: str | None) -> dict[str, Any]:
    document = {name: value for name, value in oauth.items() if value is not None}
    secret = document.pop("client_secret", None)
    if isinstance(secret, str) and secret and secret != MASK:
        document["client_secret"] = encrypt_value(secret)
    elif stored_secret:
        document["client_secret"] = stored_secret
    return document


def new_document(*, fields: ServerFields, author: ObjectId, now: datetime) -> dict[str, Any]:
    """The document to insert for a new server (before discovery results are merged in)."""
    config: dict[str, Any] = {}
    for name, path in _CONFIG_PATHS.items():
        value = fields.get(name)
        if value is not None:
            config[path.removeprefix("config.")] = value
    config.setdefault("requiresOAuth", False)
    api_key = fields.get("api_key")
    if api_key is not None:
        config["apiKey"] = _api_key_document(api_key, stored_key=None)
    oauth = fields.get("oauth")
    if oauth is not None:
        config["oauth"] = _oauth_document(oauth, stored_secret=None)
    headers = fields.get("headers")
    if headers:
        config["headers"] = dict(headers)
    server_name = fields["server_name"]
    return {
        "serverName": server_name,
        "config": config,
        "author": author,
        "scope": fields["scope"],
        "status": "active",
        "path": fields.get("path") or default_path(server_name),
        "tags": list(fields.get("tags") or []),
        "numStars": 0,
        "createdAt": now,
        "updatedAt": now,
        "__v": 0,
    }


def update_operations(
    *, fields: ServerFields, stored: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Dotted ``$set`` and ``$unset`` paths for a partial update of ``stored``.

    ``stored`` (the raw current document) supplies the ciphertexts kept when a secret is
    omitted or masked, and the stored header values kept for headers sent back masked.
    """
    to_set: dict[str, Any] = {}
    to_unset: dict[str, str] = {}
    config = stored.get("config") or {}
    for name, path in {**_CONFIG_PATHS, **_ROOT_PATHS}.items():
        if name not in fields:
            continue
        value = fields[name]  # type: ignore[literal-required]  # keys come from the maps above
        if value is None:
            to_unset[path] = ""
        else:
            to_set[path] = value
    if "api_key" in fields:
        api_key = fields["api_key"]
        if api_key is None:
            to_unset["config.apiKey"] = ""
        else:
            stored_key = (config.get("apiKey") or {}).get("key")
            document = _api_key_document(api_key, stored_key=stored_key)
            for name, value in document.items():
                to_set[f"config.apiKey.{name}"] = value
            if "custom_header" not in document:
                to_unset["config.apiKey.custom_header"] = ""
            if "key" not in document:
                to_unset["config.apiKey.key"] = ""
    if "oauth" in fields:
        oauth = fields["oauth"]
        if oauth is None:
            to_unset["config.oauth"] = ""
        else:
            stored_secret = (config.get("oauth") or {}).get("client_secret")
            for name, value in _oauth_document(oauth, stored_secret=stored_secret).items():
                to_set[f"config.oauth.{name}"] = value
    if "headers" in fields:
        headers = fields["headers"]
        if not headers:
            to_unset["config.headers"] = ""
        else:
            previous = config.get("headers") or {}
            to_set["config.headers"] = {
                name: previous.get(name, "") if value == MASK else value
                for name, value in headers.items()
            }
    return to_set, to_unset


def apply_dotted(
    document: dict[str, Any], *, to_set: Mapping[str, Any], to_unset: Mapping[str, Any]
) -> None:
    """Apply dotted ``$set``/``$unset`` paths to a nested dict (for documents not yet stored)."""
    for path, value in to_set.items():
        *parents, leaf = path.split(".")
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    for path in to_unset:
        *parents, leaf = path.split(".")
        node = document
        for part in parents:
            node = node.get(part) or {}
        node.pop(leaf, None)


def mcp_tools(server: MCPServer) -> list[dict[str, Any]]:
    """The server's tools in MCP's native shape (``name``, ``description``, ``inputSchema``).

    Derived from the stored ``toolFunctions`` (OpenAI format keyed ``<tool>_mcp_<server>``) by
    stripping the ``_mcp_<serverName>`` suffix and renaming ``parameters`` to ``inputSchema``.
    The one place that does this conversion, until the tool catalog replaces it.
    """
    functions = server.config.root.tool_functions or {}
    suffix = f"_mcp_{server.server_name}"
    tools: list[dict[str, Any]] = []
    for key, tool_function in functions.items():
        function = tool_function.function
        name = function.name if function.name else key
        tools.append(
            {
                "name": name.removesuffix(suffix),
                "description": function.description,
                "inputSchema": function.parameters,
            }
        )
    return tools


def snapshot(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A JSON-able copy of a raw stored document for the audit trail (ids and dates as text).

    Static header values are masked as in API responses: they are often credentials
    (``X-Api-Key``), and the audit trail's key-name redaction cannot recognise a header name.
    """
    if document is None:
        return None
    converted = _jsonable(document)
    assert isinstance(converted, dict)
    config = converted.get("config")
    if isinstance(config, dict) and isinstance(config.get("headers"), dict):
        config["headers"] = dict.fromkeys(config["headers"], MASK)
    return converted


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return utc_iso(value)
    return value
