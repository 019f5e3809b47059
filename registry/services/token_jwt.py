"""The registry's own JWTs: issuing an access/refresh pair and refreshing an access token."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from registry.auth import (
    AuthConfigurationError,
    IssuedTokens,
    TokenIssuer,
    TokenVerifier,
    UserContext,
    refresh_access_token,
)
from registry.errors import ServiceUnavailableError

log = structlog.get_logger("registry.tokens")

DEFAULT_EXPIRES_IN_HOURS = 8


def generate_jwt_pair(
    *,
    issuer: TokenIssuer,
    user: UserContext,
    requested_scopes: Sequence[str] | None,
    expires_in_hours: int | None,
    description: str | None,
) -> IssuedTokens:
    """An access JWT and a refresh JWT for the caller.

    ``requested_scopes`` (None: all of the caller's) must be a subset of the caller's scopes
    unless it is an admin (PermissionDeniedError); ``expires_in_hours`` (default 8, capped by
    ``REGISTRY_JWT_MAX_EXPIRES_HOURS``) must lie in 1..max (InvalidRequestError). Raises
    ServiceUnavailableError when no signing key is configured.
    """
    hours = (
        min(DEFAULT_EXPIRES_IN_HOURS, issuer.max_expires_hours)
        if expires_in_hours is None
        else expires_in_hours
    )
    try:
        issued = issuer.issue_pair(
            user=user, requested_scopes=requested_scopes, expires_in_hours=hours
        )
    except AuthConfigurationError as exc:
        raise ServiceUnavailableError(
            "This service cannot issue tokens: no JWT signing key is configured", resource="token"
        ) from exc
    log.info(
        "jwt_issued",
        subject=user.user_id,
        scope=issued.scope,
        expires_in=issued.expires_in,
        description=description,
    )
    return issued


def refresh_jwt(
    *, verifier: TokenVerifier, issuer: TokenIssuer, refresh_token: str
) -> IssuedTokens:
    """A new access JWT for a valid refresh JWT (the refresh JWT is returned unchanged).

    Raises AuthenticationError when ``refresh_token`` is not a valid refresh JWT (an access
    JWT included) and ServiceUnavailableError when no signing key is configured.
    """
    try:
        issued = refresh_access_token(verifier=verifier, issuer=issuer, refresh_token=refresh_token)
    except AuthConfigurationError as exc:
        raise ServiceUnavailableError(
            "This service cannot issue tokens: no JWT signing key is configured", resource="token"
        ) from exc
    log.info("jwt_refreshed", scope=issued.scope, expires_in=issued.expires_in)
    return issued
