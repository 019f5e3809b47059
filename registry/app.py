"""Application factory and lifespan: configuration, database, encryption, auth."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from packages.database.embedded import EmbeddedDatabaseError, EmbeddedMongo
from packages.models.schema_check import SchemaVersionMismatchError, check_schema_version
from registry.api.errors import install_error_handlers
from registry.api.health import router as health_router
from registry.api.metrics import router as metrics_router
from registry.api.middleware import RequestContextMiddleware
from registry.api.router import api_router
from registry.auth import TokenIssuer, TokenVerifier, UserContext
from registry.bootstrap import Bootstrap, ConfigurationError, resolve_settings
from registry.config import Settings, get_settings
from registry.db_session import open_database
from registry.gateway.asgi import install_gateway
from registry.logging import uses_json
from registry.runtime import Runtime
from registry.services.oauth_refresh import credential_with_refresh
from registry.services.sync_worker import start_sync_worker, stop_sync_worker

log = structlog.get_logger("registry.app")

GATEWAY_ROOT = "/mcp"
# Startup failures whose message says what to fix: reported as one event, no traceback.
STARTUP_ERRORS = (ConfigurationError, SchemaVersionMismatchError, EmbeddedDatabaseError)


def _operation_id(route: APIRoute) -> str:
    tag = str(route.tags[0]) if route.tags else "default"
    return f"{tag}-{route.name}"


def _on_embedded_exit(embedded: EmbeddedMongo, app: FastAPI) -> Callable[[asyncio.Task[int]], None]:
    def handle(task: asyncio.Task[int]) -> None:
        # Once shutdown has begun (a signal, or the lifespan's shutdown) the database may go
        # before the service has stopped it: that is part of the shutdown, not a crash.
        if task.cancelled() or embedded.stopping or app.state.shutting_down:
            return
        log.critical(
            "embedded_database_exited",
            exit_code=task.result(),
            message="The embedded database stopped unexpectedly; the service is shutting down "
            "instead of serving errors. Check the log in the data directory.",
        )
        app.state.fatal_error = "embedded database exited"
        request_shutdown = app.state.request_shutdown
        if request_shutdown is not None:
            request_shutdown()
        else:
            # No server told us how to stop it: SIGTERM makes uvicorn shut down gracefully.
            os.kill(os.getpid(), signal.SIGTERM)

    return handle


def _announce_dev_admin(runtime: Runtime, boot: Bootstrap) -> None:
    if not (boot.first_run and "JWT_SECRET" in boot.generated_secrets and boot.dev_admin_id):
        return
    if uses_json(runtime.settings.log_format):
        # JSON lines go to a collector or a file, where a bearer token must not end up: say how
        # to mint one instead (the command reads the same development secrets file).
        log.warning(
            "development_admin_created",
            user_id=boot.dev_admin_id,
            command=f"mcp-registry token create --user-id {boot.dev_admin_id} --role admin "
            "--username dev-admin",
        )
        return
    # Printed once, to the terminal only (never to the structured log): the first run of an
    # embedded development instance, so a newcomer can call the API at once.
    admin = UserContext(user_id=boot.dev_admin_id, role="admin", username="dev-admin")
    token = runtime.issuer.issue(user=admin, token_type="access", expires_in=timedelta(days=7))
    sys.stderr.write(
        "\n  Development admin token (valid 7 days; create more with "
        "`mcp-registry token create`):\n\n"
        f"  {token}\n\n"
    )


def _log_development_secrets(boot: Bootstrap) -> None:
    if boot.generated_secrets:
        log.warning(
            "development_secrets_generated",
            secrets=list(boot.generated_secrets),
            path=str(boot.secrets_file),
            message="Secrets were generated for development. Set CREDS_KEY, CREDS_IV and "
            "JWT_SECRET (or JWT_PUBLIC_KEY) for production.",
        )
    elif boot.loaded_secrets:
        log.info(
            "development_secrets_loaded",
            secrets=list(boot.loaded_secrets),
            path=str(boot.secrets_file),
        )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    started = False
    try:
        configured: Settings = app.state.settings
        check_schema_version(configured.schema_version)
        boot = resolve_settings(configured)
        settings = boot.settings
        _log_development_secrets(boot)
        async with open_database(
            settings, on_embedded_exit=lambda embedded: _on_embedded_exit(embedded, app)
        ) as db:
            runtime = Runtime(
                settings=settings,
                client=db.client,
                database=db.database,
                encryption=db.encryption,
                verifier=TokenVerifier.from_settings(settings),
                issuer=TokenIssuer.from_settings(settings),
                embedded=db.embedded,
            )
            app.state.runtime = runtime
            try:
                _announce_dev_admin(runtime, boot)
                for hook in app.state.startup_hooks:
                    await hook(runtime)
                log.info(
                    "service_started", database=settings.mongo_db, embedded=db.embedded is not None
                )
                started = True
                yield
            finally:
                app.state.shutting_down = True
                for hook in reversed(app.state.shutdown_hooks):
                    with contextlib.suppress(Exception):
                        await hook(runtime)
    except STARTUP_ERRORS as exc:
        if not started:
            app.state.startup_error = exc
            log.error("service_start_failed", error_type=type(exc).__name__, reason=str(exc))
        raise
    finally:
        log.info("service_stopped")


class RegistryApp(FastAPI):
    """The FastAPI application, with MCP traffic under ``/mcp`` sent straight to the gateway.

    Every tool call crosses the gateway, so its latency is the product's: FastAPI's routing,
    exception middleware and per-request hooks cost more than the relay work itself. The REST
    API keeps the full stack; the gateway gets only the request id.
    """

    gateway_entry: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.gateway_entry is not None:
            path: str = scope["path"]
            if path == GATEWAY_ROOT or path.startswith(GATEWAY_ROOT + "/"):
                await self.gateway_entry({**scope, "root_path": GATEWAY_ROOT}, receive, send)
                return
        elif scope["type"] == "lifespan":
            send = self._without_startup_traceback(send)
        await super().__call__(scope, receive, send)

    def _without_startup_traceback(self, send: Send) -> Send:
        # Starlette reports a failed startup with the traceback as its message, and the server
        # logs it. Our startup errors are logged once (service_start_failed) with a message
        # that says what to fix; the traceback would bury it.
        async def forward(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.state.startup_error:
                message = {**message, "message": ""}
            await send(message)

        return forward


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the FastAPI application; nothing connects until the lifespan starts."""
    app = RegistryApp(
        title="MCP Gateway Registry",
        version="0.1.0",
        description="Register MCP servers, govern their tools, keep credentials encrypted and "
        "reach them through one gateway with per-user access control.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings or get_settings()
    app.state.startup_hooks = [start_sync_worker]  # catalog sync worker (docs/catalog.md)
    app.state.shutdown_hooks = [stop_sync_worker]
    app.state.fatal_error = None
    app.state.startup_error = None  # a STARTUP_ERRORS instance when the lifespan refused to start
    # Set when shutdown begins (by the lifespan, or by the serving process on a signal).
    app.state.shutting_down = False
    # Set by the process that serves the app (mcp-registry serve) to stop it gracefully.
    app.state.request_shutdown = None
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health_router)
    app.include_router(api_router)
    gateway = install_gateway(app, credential_finder=credential_with_refresh)
    app.gateway_entry = RequestContextMiddleware(gateway)
    app.include_router(metrics_router)
    return app
