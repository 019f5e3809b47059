"""The embedded database's storage directory: one server at a time, clear startup failures.

A second server on a directory in use used to fail inside the storage engine ("Device or
resource busy"), be taken for a lost port race, be retried on new ports, and end ~11 s later
as "exited during startup (code 1)".
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from packages.database.connection import close_client, create_client
from packages.database.embedded import EmbeddedDatabaseError, EmbeddedMongo, StorageInUseError


@pytest.fixture
async def holder(tmp_path: Path) -> AsyncIterator[EmbeddedMongo]:
    """A running server on ``tmp_path / "mongo"``."""
    server = EmbeddedMongo(storage_path=tmp_path / "mongo", sync_on_commit=False)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_start_on_storage_in_use_fails_at_once_naming_the_server(
    holder: EmbeddedMongo, tmp_path: Path
) -> None:
    second = EmbeddedMongo(storage_path=tmp_path / "mongo", sync_on_commit=False)
    started = time.monotonic()

    with pytest.raises(StorageInUseError) as refused:
        await second.start()

    assert time.monotonic() - started < 1
    assert refused.value.pid == holder.pid
    assert second.pid is None  # nothing was spawned
    assert holder.is_running
    assert (tmp_path / "mongo.lock").read_text().strip() == str(holder.pid)


async def test_start_after_stop_reuses_the_storage(tmp_path: Path) -> None:
    first = EmbeddedMongo(storage_path=tmp_path / "mongo", sync_on_commit=False)
    await first.start()
    await first.stop()

    second = EmbeddedMongo(storage_path=tmp_path / "mongo", sync_on_commit=False)
    await second.start()
    try:
        assert second.is_running
    finally:
        await second.stop()


async def test_start_ignores_a_stale_lock_file(tmp_path: Path) -> None:
    """A lock file left by a process that is gone (its lock went with it) blocks nothing."""
    (tmp_path / "mongo.lock").write_text("999999\n")
    server = EmbeddedMongo(storage_path=tmp_path / "mongo", sync_on_commit=False)
    await server.start()
    try:
        assert (tmp_path / "mongo.lock").read_text().strip() == str(server.pid)
    finally:
        await server.stop()


async def test_start_failure_other_than_port_is_not_retried(tmp_path: Path) -> None:
    storage = tmp_path / "mongo"
    storage.mkdir()
    # A storage directory the engine refuses to open.
    (storage / "WiredTiger").write_text("not a WiredTiger home\n")
    (storage / "WiredTiger.turtle").write_text("not a WiredTiger home\n")
    log_path = tmp_path / "secantusd.log"
    server = EmbeddedMongo(storage_path=storage, log_path=log_path, sync_on_commit=False)
    port = server.port

    with pytest.raises(EmbeddedDatabaseError) as failed:
        await server.start()

    assert type(failed.value) is EmbeddedDatabaseError
    assert server.port == port  # not retried on another port
    last_line = [line for line in log_path.read_text().splitlines() if line.strip()][-1]
    assert last_line.strip() in str(failed.value)
    assert str(log_path) in str(failed.value)
    assert not server.is_running


async def test_close_client_with_the_server_gone_is_bounded(tmp_path: Path) -> None:
    """Every shutdown after the database died took 10 s: ``close()`` ends the client's
    sessions on the server and waited the whole server-selection timeout for it."""
    server = EmbeddedMongo(storage_path=":memory:", sync_on_commit=False)
    client = create_client(await server.start(), timeout_seconds=10)
    await client["t"]["c"].insert_one({"a": 1})  # the client now holds a server session
    await server.stop()

    started = time.monotonic()
    await close_client(client, timeout_seconds=0.5)

    assert time.monotonic() - started < 2
