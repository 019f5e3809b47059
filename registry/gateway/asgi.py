"""The gateway's ASGI entry point, mounted at ``/mcp`` ahead of the API's routes.

No FastAPI routing or dependency injection runs for gateway traffic: ``GatewayApp`` splits the
path itself and hands the request to ``Gateway.handle``. The long-lived objects (HTTP pools,
caches, the session map) are built by a startup hook and closed by a shutdown hook.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from registry.gateway.catalog import ToolCatalog
from registry.gateway.combined import CombinedServer
from registry.gateway.credentials import CredentialFinder, CredentialResolver
from registry.gateway.events import ServerEvents
from registry.gateway.gateway import Gateway
from registry.gateway.lookup import ServerLookup
from registry.gateway.policy import ToolPolicy
from registry.gateway.principals import PrincipalCache
from registry.gateway.relay import Relay
from registry.gateway.responses import send_api_error
from registry.gateway.sessions import SessionStore
from registry.runtime import Runtime

SWEEP_INTERVAL_SECONDS = 30.0
EXTRAS_KEY = "gateway"


class GatewayApp:
    """``/mcp/{name}`` → ``Gateway.handle``, ``/mcp`` → the combined server; 503 until the
    service has started."""

    def __init__(self, *, credential_finder: CredentialFinder) -> None:
        self.gateway: Gateway | None = None
        self.combined: CombinedServer | None = None
        self.credential_finder = credential_finder
        self._sweeper: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        name = path.strip("/")
        request_id = scope.get("state", {}).get("request_id")
        gateway = self.gateway
        if gateway is None:
            await send_api_error(
                send,
                status=503,
                code="unavailable",
                message="The gateway is starting",
                request_id=request_id,
            )
            return
        if not name:
            await self.serve_combined(scope, receive, send)
            return
        if not name or "/" in name:
            await send_api_error(
                send,
                status=404,
                code="not_found",
                message="Unknown gateway path: use /mcp/{serverName}",
                request_id=request_id,
            )
            return
        await gateway.handle(scope, receive, send, name)

    async def serve_combined(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/mcp`` itself: the combined server (docs/catalog.md)."""
        if scope["type"] != "http":
            return
        if self.combined is None:
            await send_api_error(
                send,
                status=503,
                code="unavailable",
                message="The gateway is starting",
                request_id=scope.get("state", {}).get("request_id"),
            )
            return
        await self.combined.handle(scope, receive, send)

    async def start(self, runtime: Runtime) -> None:
        settings = runtime.settings
        relay = Relay()
        await relay.start()
        self.gateway = Gateway(
            principals=PrincipalCache(runtime.verifier),
            lookup=ServerLookup(
                runtime.database,
                ttl_seconds=settings.gateway_server_cache_seconds,
                default_timeout_seconds=settings.upstream_timeout_seconds,
            ),
            credentials=CredentialResolver(finder=self.credential_finder),
            sessions=SessionStore(
                maxsize=settings.gateway_max_sessions,
                idle_seconds=settings.gateway_session_idle_seconds,
            ),
            events=ServerEvents(
                runtime.database,
                states=runtime.connection_states,
                error_threshold=settings.gateway_error_threshold,
            ),
            relay=relay,
            tool_policy=ToolPolicy(
                catalog=ToolCatalog(runtime.database),
                database=runtime.database,
                # Published by the sync worker's startup hook (registry.services.sync_worker).
                request_sync=lambda: runtime.extras.get("request_sync"),
                uncatalogued_passthrough=settings.default_tool_exposure == "active",
            ),
        )
        self.combined = CombinedServer(
            self.gateway,
            database=runtime.database,
            idle_seconds=settings.gateway_session_idle_seconds,
            maxsize=settings.gateway_max_sessions,
        )
        runtime.extras[EXTRAS_KEY] = self.gateway
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def stop(self, runtime: Runtime) -> None:
        gateway, self.gateway = self.gateway, None
        self.combined = None
        runtime.extras.pop(EXTRAS_KEY, None)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if gateway is not None:
            await gateway.close()
            await gateway.events.drain()
            if gateway.tool_policy is not None:
                await gateway.tool_policy.drain()
            await gateway.relay.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
            if self.gateway is not None:
                self.gateway.sessions.sweep()
            if self.combined is not None:
                self.combined.sweep()


class _CombinedRoot:
    """An ASGI app (so Starlette's ``Route`` passes every method through) for ``/mcp``."""

    def __init__(self, gateway_app: GatewayApp) -> None:
        self.gateway_app = gateway_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.gateway_app.serve_combined(scope, receive, send)


def install_gateway(app: Starlette, *, credential_finder: CredentialFinder) -> GatewayApp:
    """Mount the gateway at ``/mcp`` (first, so no API route is tried before it) with its hooks.

    ``credential_finder`` looks up a user's stored credential for a server; it is injected
    because the tokens service owns that collection and the gateway must not import services.
    """
    gateway_app = GatewayApp(credential_finder=credential_finder)
    app.router.routes.insert(0, Mount("/mcp", app=gateway_app))
    # The exact path ``/mcp`` (no trailing slash) is the combined server; a Mount alone would
    # answer it with a redirect to ``/mcp/``, which not every MCP client follows.
    app.router.routes.insert(0, Route("/mcp", endpoint=_CombinedRoot(gateway_app)))
    app.state.startup_hooks.append(gateway_app.start)
    app.state.shutdown_hooks.append(gateway_app.stop)
    return gateway_app
