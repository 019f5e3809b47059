"""Request and response bodies of the token endpoints (design 004 "Token Management")."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, field_validator

from registry.api.schemas.pagination import Pagination
from registry.services.token_types import ApiTokenType
from registry.timestamps import as_utc

_MAX_SECRET = 16_384
_MAX_IDENTIFIER = 200


_MAX_METADATA_BYTES = 16_384
_INT64 = 2**63


def _in_future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    value = as_utc(value)
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


def _utf8(value: str | None) -> str | None:
    # A lone surrogate cannot be encrypted or stored in BSON.
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text") from None
    return value


def _check_storable(value: Any) -> None:
    """Metadata must be storable in MongoDB as the external app stores it."""
    if isinstance(value, dict):
        for key, item in value.items():
            _utf8(key)
            if key.startswith("$") or "." in key or "\x00" in key:
                raise ValueError("metadata keys must not start with '$' or contain '.'")
            _check_storable(item)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item)
    elif isinstance(value, str):
        _utf8(value)
    elif isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise ValueError("metadata integers must fit in 64 bits")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("metadata numbers must be finite")


def _storable_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None:
        _check_storable(value)
        if len(json.dumps(value)) > _MAX_METADATA_BYTES:
            raise ValueError(f"metadata must be at most {_MAX_METADATA_BYTES} bytes as JSON")
    return value


class TokenCreate(BaseModel):
    """``POST /api/v1/tokens``: store (or replace) one of the caller's credentials."""

    model_config = ConfigDict(extra="forbid")

    type: ApiTokenType
    identifier: str = Field(min_length=1, max_length=_MAX_IDENTIFIER)
    token: str = Field(min_length=1, max_length=_MAX_SECRET, repr=False)
    expires_at: AwareDatetime | None = None
    metadata: dict[str, Any] | None = None

    _future = field_validator("expires_at")(_in_future)
    _text = field_validator("identifier", "token")(_utf8)
    _metadata = field_validator("metadata")(_storable_metadata)


class TokenRefreshRequest(BaseModel):
    """``PUT /api/v1/tokens/{id}/refresh``: new access value (and refresh value) from the IdP."""

    model_config = ConfigDict(extra="forbid")

    new_access_token: str = Field(min_length=1, max_length=_MAX_SECRET, repr=False)
    new_expires_at: AwareDatetime
    new_refresh_token: str | None = Field(
        default=None, min_length=1, max_length=_MAX_SECRET, repr=False
    )

    _future = field_validator("new_expires_at")(_in_future)
    _text = field_validator("new_access_token", "new_refresh_token")(_utf8)


class TokenPublic(BaseModel):
    """A stored credential without its value."""

    id: str
    user_id: str
    type: str
    identifier: str | None
    stored_type: str
    stored_identifier: str | None
    created_at: datetime
    expires_at: datetime
    metadata: dict[str, Any] | None = None


class TokenWithValue(TokenPublic):
    """A stored credential with its decrypted value (its owner only)."""

    token: str


class TokenRefreshed(BaseModel):
    """The response of ``PUT /api/v1/tokens/{id}/refresh`` (design 004's shape)."""

    id: str
    type: str
    identifier: str | None
    token: str
    expires_at: datetime
    updated_at: datetime
    refresh_token_id: str | None = None


class TokenList(BaseModel):
    tokens: list[TokenPublic]
    pagination: Pagination


class GenerateTokensRequest(BaseModel):
    """``POST /api/v1/tokens/generate``: a JWT pair for the caller."""

    model_config = ConfigDict(extra="forbid")

    requested_scopes: list[str] | None = Field(default=None, max_length=100)
    # Strict: true, "5" or 2.0 are not hour counts.
    expires_in_hours: StrictInt | None = None
    description: str | None = Field(default=None, max_length=500)

    _text = field_validator("description")(_utf8)

    @field_validator("requested_scopes")
    @classmethod
    def _scopes_text(cls, value: list[str] | None) -> list[str] | None:
        for scope in value or []:
            _utf8(scope)
        return value


class IssuedTokensPublic(BaseModel):
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    token_type: Literal["Bearer"] = "Bearer"
    scope: str


class GenerateTokensResponse(BaseModel):
    success: bool = True
    tokens: IssuedTokensPublic


class RefreshJwtRequest(BaseModel):
    """``POST /api/v1/tokens/jwt/refresh``: the refresh JWT is the credential."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(
        min_length=1, max_length=_MAX_SECRET, pattern=r"^[A-Za-z0-9_\-.=]+$", repr=False
    )
