"""The one place that turns exceptions into HTTP error responses.

Every non-2xx body has design 004's shape: ``{"error": code, "message": text}`` plus
``request_id`` and, where useful, ``details`` or the extra fields a design response shows.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry import errors

log = structlog.get_logger("registry.api")

STATUS_BY_ERROR: dict[type[errors.RegistryError], int] = {
    errors.RegistryError: 500,
    errors.NotFoundError: 404,
    errors.ConflictError: 409,
    errors.StaleUpdateError: 409,
    errors.IncompatibleDocumentError: 409,
    errors.PermissionDeniedError: 403,
    errors.AuthenticationError: 401,
    errors.InvalidRequestError: 400,
    errors.InvariantError: 422,
    errors.ServiceUnavailableError: 503,
    errors.UpstreamError: 502,
    errors.UpstreamTimeoutError: 504,
    errors.UpstreamProtocolError: 502,
}

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


class ErrorBody(BaseModel):
    """The error response shape (for OpenAPI documentation)."""

    error: str
    message: str
    request_id: str | None = None
    details: Any | None = None


def status_for(exc: errors.RegistryError) -> int:
    """Find the status by walking the exception's MRO (the most specific mapping wins)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_response(
    request: Request,
    *,
    status: int,
    code: str,
    message: str,
    details: Any | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    if extra:
        body.update(extra)
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


async def _registry_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.RegistryError)
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status >= 500:
        log.warning("request_failed", error_type=type(exc).__name__, status=status)
    return error_response(
        request,
        status=status,
        code=exc.code,
        message=exc.message,
        details=exc.details,
        extra=exc.extra_body(),
        headers=headers,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {
            "loc": list(item.get("loc", ())),
            "msg": item.get("msg", ""),
            "type": item.get("type", ""),
        }
        for item in exc.errors()
    ]
    # The offending input is left out on purpose: it may hold a secret (an API key, a token).
    return error_response(
        request,
        status=422,
        code="validation_error",
        message="Request validation failed",
        details=details,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODE_BY_STATUS.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else "Request failed"
    headers = dict(exc.headers) if exc.headers else None
    return error_response(
        request, status=exc.status_code, code=code, message=message, headers=headers
    )


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    # The cause goes to the log, never to the client.
    log.error("unhandled_exception", error_type=type(exc).__name__, exc_info=exc)
    return error_response(
        request, status=500, code="internal_error", message="Internal server error"
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the error handlers on ``app``."""
    app.add_exception_handler(errors.RegistryError, _registry_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled_error)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Bad request"),
        (401, "Missing or invalid bearer token"),
        (403, "Not allowed"),
        (404, "Not found"),
        (409, "Conflict"),
        (422, "Validation error"),
    )
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses, using the shared error model."""
    return {status: ERROR_RESPONSES[status] for status in statuses}
