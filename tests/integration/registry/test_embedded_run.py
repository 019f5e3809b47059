"""Zero-configuration run: the embedded database starts, persists data, and stops."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from bson import ObjectId
from httpx import ASGITransport, AsyncClient
from structlog.testing import capture_logs

from packages.models import MCPServer
from registry.app import create_app
from registry.config import Settings


async def test_embedded_mode_persists_data_across_restarts(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, mongo_db="embedded_test")
    server_id = ObjectId()

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/ready")).status_code == 200
        await MCPServer.get_pymongo_collection().insert_one(
            {"_id": server_id, "serverName": "persisted", "path": "/mcp/persisted"}
        )
        embedded = app.state.runtime.embedded
        assert embedded is not None and embedded.is_running
    assert not embedded.is_running
    assert (tmp_path / "dev-secrets.json").exists()
    assert (tmp_path / "mongo").is_dir()

    again = create_app(Settings(data_dir=tmp_path, mongo_db="embedded_test"))
    with capture_logs() as logs:
        async with again.router.lifespan_context(again):
            stored = await MCPServer.get_pymongo_collection().find_one({"_id": server_id})
            assert stored is not None and stored["serverName"] == "persisted"
    # Every start used to log development_secrets_generated, also when only reading them back.
    events = [entry["event"] for entry in logs]
    assert "development_secrets_loaded" in events
    assert "development_secrets_generated" not in events


async def test_embedded_database_exit_after_shutdown_began_is_not_fatal(tmp_path: Path) -> None:
    """Ctrl-C reached the embedded database too; its exit during the shutdown was taken for a
    crash (embedded_database_exited, exit status 1)."""
    app = create_app(Settings(data_dir=tmp_path, mongo_db="embedded_test"))
    shutdowns: list[bool] = []
    app.state.request_shutdown = lambda: shutdowns.append(True)
    with capture_logs() as logs:
        async with app.router.lifespan_context(app):
            embedded = app.state.runtime.embedded
            assert embedded is not None and embedded.pid is not None
            watchdog = next(
                task
                for task in asyncio.all_tasks()
                if getattr(task.get_coro(), "__qualname__", "") == "EmbeddedMongo.wait_exited"
            )
            app.state.shutting_down = True  # what the server's signal handler does
            os.kill(embedded.pid, signal.SIGTERM)
            # Its done-callback (the watchdog's decision) runs before this await resumes.
            await watchdog

    assert app.state.fatal_error is None
    assert shutdowns == []
    assert "embedded_database_exited" not in [entry["event"] for entry in logs]
