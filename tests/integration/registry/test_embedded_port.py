"""The embedded database never mistakes another server on its port for itself.

Its port is chosen before the server binds it, so another process can take it in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from packages.database.embedded import EmbeddedDatabaseError, EmbeddedMongo
from tests.support import wait_until


@pytest.fixture
async def squatter() -> AsyncIterator[EmbeddedMongo]:
    """Another server already listening on the port the next one was going to use."""
    server = EmbeddedMongo(storage_path=":memory:", sync_on_commit=False)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_start_moves_to_a_new_port_when_its_port_was_taken(
    squatter: EmbeddedMongo,
) -> None:
    server = EmbeddedMongo(storage_path=":memory:", sync_on_commit=False)
    server.port = squatter.port  # what losing the race looks like
    await server.start()
    try:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(server.uri)
        try:
            status = await client.admin.command("serverStatus")
        finally:
            await client.close()
        assert server.port != squatter.port
        assert status["pid"] == server.pid
    finally:
        await server.stop()
    assert squatter.is_running


async def test_start_on_an_explicit_port_held_by_another_server_fails(
    squatter: EmbeddedMongo,
) -> None:
    server = EmbeddedMongo(storage_path=":memory:", port=squatter.port, sync_on_commit=False)

    with pytest.raises(EmbeddedDatabaseError):
        await server.start()

    assert not server.is_running
    assert squatter.is_running


async def test_start_cancelled_midway_leaves_no_server_behind(tmp_path: Path) -> None:
    server = EmbeddedMongo(storage_path=tmp_path / "mongo", sync_on_commit=False)
    starting = asyncio.create_task(server.start())

    await wait_until(lambda: server.pid is not None)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting

    assert not server.is_running
