"""Domain errors raised by services, the gateway and auth; the API maps them to responses.

Hierarchy (callers catch by category)::

    RegistryError
    ├── NotFoundError                 404 not_found
    ├── ConflictError                 409 conflict
    │   ├── StaleUpdateError          409 conflict (optimistic concurrency, carries timestamps)
    │   └── IncompatibleDocumentError 409 incompatible_document (stored data fails our models)
    ├── PermissionDeniedError         403 forbidden
    ├── AuthenticationError           401 unauthorized
    ├── InvalidRequestError           400 bad_request (422 invalid_state via InvariantError)
    │   └── InvariantError            422 invalid_state
    ├── ServiceUnavailableError       503 unavailable
    └── UpstreamError                 502 upstream_error
        ├── UpstreamTimeoutError      504 upstream_timeout
        └── UpstreamProtocolError     502 upstream_protocol_error

Messages are written for people and never contain secrets or raw upstream text that may
echo credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registry.timestamps import utc_iso


class RegistryError(Exception):
    """Base class of every error the service raises on purpose."""

    code = "error"

    def __init__(
        self,
        message: str,
        *,
        resource: str | None = None,
        resource_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.resource = resource
        self.resource_id = resource_id
        self.details = dict(details) if details else None

    def extra_body(self) -> dict[str, Any]:
        """Fields added at the top level of the error response (beside error/message)."""
        return {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, resource={self.resource!r}, "
            f"resource_id={self.resource_id!r})"
        )


class NotFoundError(RegistryError):
    code = "not_found"


class ConflictError(RegistryError):
    code = "conflict"


class StaleUpdateError(ConflictError):
    """The caller's ``updatedAt`` does not match the stored one (optimistic concurrency)."""

    def __init__(
        self,
        message: str,
        *,
        current_updated_at: datetime | None,
        provided_updated_at: datetime | None,
        resource: str | None = None,
        resource_id: str | None = None,
    ) -> None:
        super().__init__(message, resource=resource, resource_id=resource_id)
        self.current_updated_at = current_updated_at
        self.provided_updated_at = provided_updated_at

    def extra_body(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            # Design 004's example shows whole seconds ("2026-01-03T15:45:00Z"); a stamp with a
            # fraction keeps its milliseconds, as every other timestamp of the API does.
            if value is None:
                return None
            text = utc_iso(value)
            return text if value.microsecond else text.replace(".000Z", "Z")

        return {
            "current_updated_at": iso(self.current_updated_at),
            "provided_updated_at": iso(self.provided_updated_at),
        }


class IncompatibleDocumentError(ConflictError):
    """A stored document (written by the external app or a newer schema) fails our models."""

    code = "incompatible_document"


class PermissionDeniedError(RegistryError):
    code = "forbidden"


class AuthenticationError(RegistryError):
    code = "unauthorized"


class InvalidRequestError(RegistryError):
    code = "bad_request"


class InvariantError(InvalidRequestError):
    """A requested state change would break a catalog invariant."""

    code = "invalid_state"


class ServiceUnavailableError(RegistryError):
    code = "unavailable"


class UpstreamError(RegistryError):
    """An upstream MCP server could not be used."""

    code = "upstream_error"


class UpstreamTimeoutError(UpstreamError):
    code = "upstream_timeout"


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"
