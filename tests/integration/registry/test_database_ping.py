"""``ping`` is bounded: a server that accepts connections but never answers is "not ready"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from packages.database.connection import create_client, ping


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and reads, but never writes a byte."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_ping_of_a_silent_server_gives_up_in_time(silent_server: int) -> None:
    client = create_client(f"mongodb://127.0.0.1:{silent_server}/?directConnection=true")
    started = time.monotonic()
    try:
        answered = await ping(client, timeout_seconds=0.5)
    finally:
        await client.close()

    assert answered is False
    assert time.monotonic() - started < 5


async def test_ping_of_the_test_database_answers(mongo_uri: str) -> None:
    client = create_client(mongo_uri)
    try:
        assert await ping(client, timeout_seconds=5) is True
    finally:
        await client.close()
