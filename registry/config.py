"""Service configuration: the one place that reads the environment.

Variable names are the ones design 004 and the issues give (``MONGO_URI``, ``CREDS_KEY``, ...),
because operators share them with the external app (jarvis-api). Registry-only settings use the
``REGISTRY_`` prefix through explicit aliases.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SCHEMA_SOURCE = "https://github.com/ascending-llc/jarvis-api/releases/download"

_HEX = re.compile(r"^[0-9a-fA-F]*$")


def _check_hex(value: SecretStr | None, *, name: str, length: int) -> SecretStr | None:
    if value is None:
        return None
    raw = value.get_secret_value().strip()
    if raw == "":
        return None
    if len(raw) != length or not _HEX.match(raw):
        # The message names the variable but never echoes the value: it is a secret.
        raise ValueError(f"{name} must be exactly {length} hexadecimal characters")
    return SecretStr(raw.lower())


class Settings(BaseSettings):
    """Every setting of the service, read from the environment (see README's table)."""

    # hide_input_in_errors: a malformed secret must not be echoed in the startup error.
    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, populate_by_name=True, hide_input_in_errors=True
    )

    # Database
    mongo_uri: SecretStr | None = Field(default=None, validation_alias="MONGO_URI")
    mongo_db: str = Field(default="jarvis", validation_alias="MONGO_DB", min_length=1)
    data_dir: Path = Field(default=Path("./data"), validation_alias="REGISTRY_DATA_DIR")
    mongo_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="REGISTRY_MONGO_TIMEOUT_SECONDS"
    )

    # Encryption (LibreChat-compatible; shared with the external app)
    creds_key: SecretStr | None = Field(default=None, validation_alias="CREDS_KEY")
    creds_iv: SecretStr | None = Field(default=None, validation_alias="CREDS_IV")

    # HTTP server
    host: str = Field(default="127.0.0.1", validation_alias="HOST")
    port: int = Field(default=8000, ge=0, le=65535, validation_alias="PORT")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", validation_alias="LOG_LEVEL"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", validation_alias="REGISTRY_LOG_FORMAT"
    )

    # Shared schema
    schema_version: str = Field(default="v0.0.31", validation_alias="SCHEMA_VERSION")
    schema_source: str = Field(
        default=DEFAULT_SCHEMA_SOURCE, validation_alias="REGISTRY_SCHEMA_SOURCE"
    )

    # Authentication: HS256 with JWT_SECRET (the external app's convention) or RS256 with
    # JWT_PUBLIC_KEY (and JWT_PRIVATE_KEY to issue tokens).
    jwt_secret: SecretStr | None = Field(default=None, validation_alias="JWT_SECRET")
    jwt_public_key: SecretStr | None = Field(default=None, validation_alias="JWT_PUBLIC_KEY")
    jwt_private_key: SecretStr | None = Field(default=None, validation_alias="JWT_PRIVATE_KEY")
    jwt_issuer: str | None = Field(default=None, validation_alias="JWT_ISSUER")
    jwt_audience: str | None = Field(default=None, validation_alias="JWT_AUDIENCE")
    jwt_max_expires_hours: int = Field(
        default=24, ge=1, le=24 * 30, validation_alias="REGISTRY_JWT_MAX_EXPIRES_HOURS"
    )
    jwt_refresh_expires_hours: int = Field(
        default=24 * 7, ge=1, validation_alias="REGISTRY_JWT_REFRESH_EXPIRES_HOURS"
    )

    # Upstream MCP servers
    upstream_timeout_seconds: float = Field(
        default=15.0, gt=0, validation_alias="REGISTRY_UPSTREAM_TIMEOUT_SECONDS"
    )
    discovery_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="REGISTRY_DISCOVERY_TIMEOUT_SECONDS"
    )

    # Tool catalog and its background sync worker (docs/catalog.md)
    default_tool_exposure: Literal["active", "draft"] = Field(
        default="active", validation_alias="DEFAULT_TOOL_EXPOSURE"
    )
    sync_enabled: bool = Field(default=True, validation_alias="REGISTRY_SYNC_ENABLED")
    sync_interval_seconds: float = Field(
        default=300.0, gt=0, validation_alias="REGISTRY_SYNC_INTERVAL_SECONDS"
    )
    sync_concurrency: int = Field(
        default=8, ge=1, le=256, validation_alias="REGISTRY_SYNC_CONCURRENCY"
    )
    sync_tick_seconds: float = Field(
        default=5.0, gt=0, validation_alias="REGISTRY_SYNC_TICK_SECONDS"
    )
    sync_backoff_max_seconds: float = Field(
        default=3600.0, gt=0, validation_alias="REGISTRY_SYNC_BACKOFF_MAX_SECONDS"
    )
    sync_failure_threshold: int = Field(
        default=3, ge=1, validation_alias="REGISTRY_SYNC_FAILURE_THRESHOLD"
    )

    # Gateway (/mcp/{server}): see docs/gateway.md.
    gateway_error_threshold: int = Field(
        default=3, ge=1, validation_alias="REGISTRY_GATEWAY_ERROR_THRESHOLD"
    )
    gateway_server_cache_seconds: float = Field(
        default=5.0, ge=0, validation_alias="REGISTRY_GATEWAY_SERVER_CACHE_SECONDS"
    )
    gateway_session_idle_seconds: float = Field(
        default=3600.0, gt=0, validation_alias="REGISTRY_GATEWAY_SESSION_IDLE_SECONDS"
    )
    gateway_max_sessions: int = Field(
        default=10_000, ge=1, validation_alias="REGISTRY_GATEWAY_MAX_SESSIONS"
    )

    # Prometheus /metrics: an admin bearer token, or this static scrape token, unless public.
    metrics_token: SecretStr | None = Field(default=None, validation_alias="REGISTRY_METRICS_TOKEN")
    metrics_public: bool = Field(default=False, validation_alias="REGISTRY_METRICS_PUBLIC")

    @field_validator("creds_key", mode="after")
    @classmethod
    def _validate_creds_key(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_hex(value, name="CREDS_KEY", length=64)

    @field_validator("creds_iv", mode="after")
    @classmethod
    def _validate_creds_iv(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_hex(value, name="CREDS_IV", length=32)

    @field_validator("mongo_uri", "jwt_secret", "jwt_public_key", "jwt_private_key", mode="after")
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value().strip() == "":
            return None
        return value

    @property
    def is_embedded(self) -> bool:
        """True when no MONGO_URI is configured and the embedded development DB is used."""
        return self.mongo_uri is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
