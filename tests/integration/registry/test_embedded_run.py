"""Zero-configuration run: the embedded database starts, persists data, and stops."""

from __future__ import annotations

from pathlib import Path

from bson import ObjectId
from httpx import ASGITransport, AsyncClient

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
    async with again.router.lifespan_context(again):
        stored = await MCPServer.get_pymongo_collection().find_one({"_id": server_id})
        assert stored is not None and stored["serverName"] == "persisted"
