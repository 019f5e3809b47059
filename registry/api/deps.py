"""FastAPI dependencies: the runtime, settings and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, Request, params

from registry.auth import UserContext, api_scope_for, authorize_scope
from registry.config import Settings
from registry.errors import AuthenticationError
from registry.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_runtime_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_runtime_settings)]


def bearer_token(request: Request) -> str:
    """The raw bearer token of the request, or AuthenticationError."""
    header = request.headers.get("authorization")
    if not header:
        raise AuthenticationError("Missing bearer token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization header must be 'Bearer <token>'")
    return token.strip()


def get_current_principal(request: Request, runtime: RuntimeDep) -> UserContext:
    principal = runtime.verifier.verify(bearer_token(request))
    structlog.contextvars.bind_contextvars(principal_id=principal.user_id)
    return principal


CurrentPrincipal = Annotated[UserContext, Depends(get_current_principal)]


def requires_api_scope(resource: str) -> params.Depends:
    """A router dependency: the caller's token must grant ``read:`` (GET) or ``write:``
    (anything else) on ``resource`` when it names scopes (``acl.authorize_scope``)."""

    def check_scope(request: Request, principal: CurrentPrincipal) -> None:
        authorize_scope(principal, api_scope_for(resource, request.method))

    scoped: params.Depends = Depends(check_scope)
    return scoped


def require_admin(principal: CurrentPrincipal) -> UserContext:
    principal.validate_admin()
    return principal


AdminPrincipal = Annotated[UserContext, Depends(require_admin)]
