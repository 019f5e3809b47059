"""Request and response schemas of ``/api/v1/servers`` (design 004, "Server Response Schema").

JSON names are design 004's (camelCase at the top level, snake_case inside ``apiKey`` and
``oauth``). Naming rules, enforced here so we never store what the external app rejects:

- ``serverName``: ``^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$``. It becomes part of every tool
  function name (``<tool>_mcp_<serverName>``) and of the default path ``/mcp/<serverName>``.
  It cannot be changed after registration (PATCH rejects the field with 422).
- ``title``: ``^[a-zA-Z0-9 ]+$``, the shared schema's (v0.0.31) rule for ``config.title``.
- ``url``: absolute ``http``/``https`` without userinfo (put credentials in ``apiKey``).
- ``path``: ``/mcp/`` followed by segments of letters, digits, ``_`` and ``-``.

Responses mask ``apiKey.key``, ``oauth.client_secret`` and static header values as ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, Self, cast
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from packages.models import MCPServer
from registry.api.schemas.pagination import Pagination
from registry.services.server_documents import MASK, ServerFields
from registry.timestamps import as_utc, utc_iso

# The caller's connection state of a server (app-level or the caller's own, see gateway docs).
StateReader = Callable[[MCPServer], str]

SERVER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
TITLE_PATTERN = r"^[a-zA-Z0-9 ]+$"
PATH_PATTERN = r"^/mcp(/[A-Za-z0-9_-]+)+$"
OBJECT_ID_PATTERN = r"^[0-9a-fA-F]{24}$"
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

Transport = Literal["streamable-http", "sse"]
Scope = Literal["private_user", "shared_user", "shared_app"]
Status = Literal["active", "inactive", "error"]


UtcDateTime = Annotated[datetime, PlainSerializer(utc_iso, return_type=str, when_used="json")]
# A timestamp the client sends: converted to UTC, 422 when UTC cannot represent it.
UtcInstant = Annotated[datetime, AfterValidator(as_utc)]
Text = Annotated[str, Field(max_length=2048)]


def _check_http_url(value: str) -> str:
    if len(value) > 2048 or any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ValueError("must be an http(s) URL without spaces, at most 2048 characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        raise ValueError("must be a valid http(s) URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials; use apiKey instead")
    return value


def _check_single_line(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must be a single line")
    return value


class ApiKeyIn(BaseModel):
    """How the upstream expects its API key. ``key`` may be omitted when ``source`` is
    ``user`` (each user brings their own); in a PATCH, omitted or ``***`` keeps the stored key.
    """

    model_config = ConfigDict(extra="forbid")

    key: str | None = Field(default=None, min_length=1, max_length=4096)
    source: Literal["admin", "user"]
    authorization_type: Literal["bearer", "basic", "custom"]
    custom_header: str | None = Field(default=None, max_length=128)

    @field_validator("key")
    @classmethod
    def _key_single_line(cls, value: str | None) -> str | None:
        return _check_single_line(value) if value is not None else None

    @model_validator(mode="after")
    def _custom_header_rules(self) -> Self:
        if self.authorization_type == "custom":
            if not self.custom_header or not _HEADER_NAME.match(self.custom_header):
                raise ValueError("authorization_type 'custom' needs a valid custom_header")
        elif self.custom_header is not None:
            raise ValueError("custom_header is only used with authorization_type 'custom'")
        return self


class OAuthIn(BaseModel):
    """OAuth client configuration (the shared schema's OAuthConfig fields)."""

    model_config = ConfigDict(extra="forbid")

    authorization_url: Text | None = None
    token_url: Text | None = None
    client_id: Text | None = None
    client_secret: Text | None = None
    scope: Text | None = None
    redirect_uri: Text | None = None
    token_exchange_method: Literal["default_post", "basic_auth_header"] | None = None
    grant_types_supported: list[Text] | None = Field(default=None, max_length=32)
    token_endpoint_auth_methods_supported: list[Text] | None = Field(default=None, max_length=32)
    response_types_supported: list[Text] | None = Field(default=None, max_length=32)
    code_challenge_methods_supported: list[Text] | None = Field(default=None, max_length=32)
    skip_code_challenge_check: bool | None = None
    revocation_endpoint: Text | None = None
    revocation_endpoint_auth_methods_supported: list[Text] | None = Field(
        default=None, max_length=32
    )

    @field_validator("authorization_url", "token_url", "redirect_uri", "revocation_endpoint")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _check_http_url(value) if value is not None else None


Tag = Annotated[str, Field(min_length=1, max_length=64)]
Headers = Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=32)]
Milliseconds = Annotated[int, Field(ge=1, le=3_600_000)]


def _check_headers(value: dict[str, str] | None) -> dict[str, str] | None:
    for name, header_value in (value or {}).items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"invalid header name {name[:64]!r}")
        _check_single_line(header_value)
    return value


def _dedupe(tags: list[str] | None) -> list[str] | None:
    return list(dict.fromkeys(tags)) if tags is not None else None


class _ServerFieldsIn(BaseModel):
    """Fields shared by create and update (all optional here)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    title: str | None = Field(default=None, min_length=1, max_length=128, pattern=TITLE_PATTERN)
    description: str | None = Field(default=None, max_length=4000)
    api_key: ApiKeyIn | None = Field(default=None, alias="apiKey")
    oauth: OAuthIn | None = None
    requires_oauth: bool | None = Field(default=None, alias="requiresOAuth")
    tags: list[Tag] | None = Field(default=None, max_length=32)
    path: str | None = Field(default=None, max_length=256, pattern=PATH_PATTERN)
    timeout: Milliseconds | None = None
    init_timeout: Milliseconds | None = Field(default=None, alias="initTimeout")
    headers: Headers | None = None

    _tags = field_validator("tags")(_dedupe)
    _headers = field_validator("headers")(_check_headers)

    @field_validator("url", check_fields=False)
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_http_url(value) if value is not None else None


class ServerCreate(_ServerFieldsIn):
    """``POST /api/v1/servers``."""

    server_name: str = Field(alias="serverName", pattern=SERVER_NAME_PATTERN)
    type: Transport
    url: str
    scope: Scope = "private_user"

    @model_validator(mode="after")
    def _secrets_are_real(self) -> Self:
        if self.api_key is not None:
            if self.api_key.key == MASK:
                raise ValueError("apiKey.key must be the real key, not the mask")
            if self.api_key.source == "admin" and not self.api_key.key:
                raise ValueError("apiKey.key is required when source is 'admin'")
        if self.oauth is not None and self.oauth.client_secret == MASK:
            raise ValueError("oauth.client_secret must be the real secret, not the mask")
        return self

    def to_fields(self) -> ServerFields:
        fields = cast(ServerFields, self.model_dump())
        fields["requires_oauth"] = bool(self.requires_oauth)
        return fields


# Fields a PATCH may change but never remove (null is rejected for them).
_NOT_NULLABLE = ("type", "url", "requires_oauth", "scope", "tags", "path", "status")


class ServerUpdate(_ServerFieldsIn):
    """``PATCH /api/v1/servers/{server_id}``: only the fields sent change; ``null`` removes an
    optional field. ``updatedAt`` (optional) enables optimistic concurrency."""

    type: Transport | None = None
    url: str | None = None
    scope: Scope | None = None
    status: Literal["active", "inactive"] | None = None
    updated_at: UtcInstant | None = Field(default=None, alias="updatedAt")

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        for name in _NOT_NULLABLE:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{type(self).model_fields[name].alias or name} cannot be null")
        return self

    def to_fields(self) -> ServerFields:
        return cast(ServerFields, self.model_dump(exclude_unset=True, exclude={"updated_at"}))


class ApiKeyPublic(BaseModel):
    key: str | None = None
    source: str
    authorization_type: str
    custom_header: str | None = None


class ServerListItem(BaseModel):
    """One server in a list: design 004's flattened shape, without ``toolFunctions``."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    server_name: str = Field(alias="serverName")
    title: str | None = None
    description: str | None = None
    type: str
    url: str | None = None
    api_key: ApiKeyPublic | None = Field(default=None, alias="apiKey")
    requires_oauth: bool = Field(default=False, alias="requiresOAuth")
    oauth: dict[str, Any] | None = None
    oauth_metadata: dict[str, Any] | None = Field(default=None, alias="oauthMetadata")
    headers: dict[str, str] | None = None
    timeout: int | None = None
    init_timeout: int | None = Field(default=None, alias="initTimeout")
    capabilities: str | None = None
    tools: str | None = None
    init_duration: int | None = Field(default=None, alias="initDuration")
    author: str
    scope: str
    status: str | None = None
    path: str
    tags: list[str] = Field(default_factory=list)
    num_tools: int = Field(alias="numTools")
    num_stars: int = Field(default=0, alias="numStars")
    last_connected: UtcDateTime | None = Field(default=None, alias="lastConnected")
    last_error: UtcDateTime | None = Field(default=None, alias="lastError")
    error_message: str | None = Field(default=None, alias="errorMessage")
    created_at: UtcDateTime | None = Field(default=None, alias="createdAt")
    updated_at: UtcDateTime | None = Field(default=None, alias="updatedAt")
    connection_state: str = Field(alias="connectionState")

    @classmethod
    def from_document(cls, server: MCPServer, *, state_of: StateReader) -> Self:
        return cls.model_validate(_flatten(server, state_of=state_of))


class ServerPublic(ServerListItem):
    """One server in detail (adds ``toolFunctions``, OpenAI function format)."""

    tool_functions: dict[str, Any] | None = Field(default=None, alias="toolFunctions")

    @classmethod
    def from_document(cls, server: MCPServer, *, state_of: StateReader) -> Self:
        tool_functions = server.config.root.tool_functions
        return cls.model_validate(
            {
                **_flatten(server, state_of=state_of),
                "toolFunctions": {
                    key: value.model_dump(mode="json", exclude_none=True)
                    for key, value in (tool_functions or {}).items()
                },
            }
        )


def count_tools(server: MCPServer) -> int:
    if server.num_tools is not None:
        return server.num_tools
    tools = server.config.root.tools or ""
    return len([name for name in tools.split(",") if name.strip()])


def _flatten(server: MCPServer, *, state_of: StateReader) -> dict[str, Any]:
    """The stored document flattened as design 004 shows it, with secrets masked."""
    config = server.config.root
    api_key = None
    if config.api_key is not None:
        api_key = config.api_key.model_dump(exclude_none=True)
        if api_key.get("key"):
            api_key["key"] = MASK
    oauth = None
    if config.oauth is not None:
        oauth = config.oauth.model_dump(mode="json", exclude_none=True)
        if oauth.get("client_secret"):
            oauth["client_secret"] = MASK
    headers = getattr(config, "headers", None)
    server_id = str(server.id)
    return {
        "id": server_id,
        "serverName": server.server_name,
        "title": config.title,
        "description": config.description,
        "type": config.type,
        "url": getattr(config, "url", None),
        "apiKey": api_key,
        "requiresOAuth": bool(config.requires_oauth),
        "oauth": oauth,
        "oauthMetadata": config.oauth_metadata,
        "headers": {name: MASK for name in headers} if headers else None,
        "timeout": config.timeout,
        "initTimeout": config.init_timeout,
        "capabilities": config.capabilities,
        "tools": config.tools,
        "initDuration": round(config.init_duration) if config.init_duration is not None else None,
        "author": str(server.author),
        "scope": server.scope,
        "status": server.status,
        "path": server.path,
        "tags": server.tags or [],
        "numTools": count_tools(server),
        "numStars": server.num_stars or 0,
        "lastConnected": server.last_connected,
        "lastError": server.last_error,
        "errorMessage": server.error_message,
        "createdAt": server.created_at,
        "updatedAt": server.updated_at,
        "connectionState": state_of(server),
    }


class ServerList(BaseModel):
    servers: list[ServerListItem]
    pagination: Pagination
