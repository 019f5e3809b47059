"""Open the service's database: for the app's lifespan and for operator commands.

``open_database`` starts the embedded development database when no ``MONGO_URI`` is set,
connects, checks the server answers, binds the Beanie documents and configures credential
encryption. It takes *resolved* settings (``registry.bootstrap.resolve_settings``), so the
development secrets are the service's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from packages.database.connection import MongoClient, close_client, create_client, ping
from packages.database.embedded import EmbeddedMongo, StorageInUseError
from packages.database.encryption import EncryptionService, configure_encryption
from registry.bootstrap import ConfigurationError
from registry.config import Settings
from registry.db import init_database

log = structlog.get_logger("registry.db")

EMBEDDED_DB_DIR = "mongo"
# Closing the client ends its server sessions; with the database gone that must not hold up
# the shutdown (it took the full server-selection timeout, 10 s).
CLOSE_TIMEOUT_SECONDS = 1.0
EMBEDDED_NOTICE = (
    "Using an EMBEDDED DEVELOPMENT DATABASE (SecantusDB). For production set "
    "MONGO_URI=mongodb://host:27017/?replicaSet=rs0 to use a real MongoDB."
)


@dataclass(frozen=True)
class DatabaseSession:
    """A connected, initialised database and what it took to open it."""

    settings: Settings
    client: MongoClient
    database: AsyncDatabase[dict[str, Any]]
    encryption: EncryptionService
    embedded: EmbeddedMongo | None


def embedded_server(settings: Settings) -> EmbeddedMongo:
    """The embedded development database stored under ``settings.data_dir``."""
    return EmbeddedMongo(
        storage_path=settings.data_dir / EMBEDDED_DB_DIR,
        log_path=settings.data_dir / "secantusd.log",
    )


@asynccontextmanager
async def open_database(
    settings: Settings,
    *,
    on_embedded_exit: Callable[[EmbeddedMongo], Callable[[asyncio.Task[int]], None]] | None = None,
) -> AsyncIterator[DatabaseSession]:
    """Connect to MongoDB (or start the embedded one), init Beanie, configure encryption.

    Everything opened here is closed on exit, including the embedded server process. With
    ``on_embedded_exit``, the callback it returns runs when the embedded server exits, also
    unexpectedly (the service uses it to shut down instead of serving errors).

    Raises:
        ConfigurationError: the database does not answer within ``mongo_timeout_seconds``,
            the encryption keys are missing (resolve the settings first), or another process
            (a running service, or a database server left behind by one) holds the embedded
            database's data directory.
        EmbeddedDatabaseError: the embedded server could not start.
    """
    if settings.creds_key is None or settings.creds_iv is None:
        raise ConfigurationError("CREDS_KEY and CREDS_IV must be set (resolve the settings first)")
    embedded: EmbeddedMongo | None = None
    watchdog: asyncio.Task[int] | None = None
    if settings.mongo_uri is None:
        embedded = embedded_server(settings)
        try:
            uri = await embedded.start()
        except StorageInUseError as exc:
            holder = f"pid {exc.pid}" if exc.pid is not None else "another process"
            raise ConfigurationError(
                f"data directory {settings.data_dir.resolve()} is in use by {holder} (another "
                "mcp-registry or a leftover database process); stop it or use another "
                "REGISTRY_DATA_DIR"
            ) from exc
        log.warning(
            "embedded_database_started",
            uri=f"mongodb://127.0.0.1:{embedded.port}",
            storage=str((settings.data_dir / EMBEDDED_DB_DIR).resolve()),
            message=EMBEDDED_NOTICE,
        )
        if on_embedded_exit is not None:
            watchdog = asyncio.create_task(embedded.wait_exited())
            watchdog.add_done_callback(on_embedded_exit(embedded))
    else:
        uri = settings.mongo_uri.get_secret_value()
    try:
        client = create_client(uri, timeout_seconds=settings.mongo_timeout_seconds)
        try:
            if not await ping(client, timeout_seconds=settings.mongo_timeout_seconds):
                raise ConfigurationError(
                    f"MongoDB at the configured MONGO_URI did not answer within "
                    f"{settings.mongo_timeout_seconds:.0f}s"
                )
            database = client[settings.mongo_db]
            await init_database(database)
            encryption = configure_encryption(
                key_hex=settings.creds_key.get_secret_value(),
                iv_hex=settings.creds_iv.get_secret_value(),
            )
            yield DatabaseSession(
                settings=settings,
                client=client,
                database=database,
                encryption=encryption,
                embedded=embedded,
            )
        finally:
            await close_client(client, timeout_seconds=CLOSE_TIMEOUT_SECONDS)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if embedded is not None:
            await embedded.stop()
