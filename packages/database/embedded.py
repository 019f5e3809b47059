"""Launch and supervise an embedded MongoDB-wire-compatible server (SecantusDB).

Used for zero-configuration development runs and for the test suite. The server runs as a
child process bound to loopback only.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from packages.database.connection import MongoClient

EXECUTABLE_NAME = "secantusd-py"
# Each readiness ping is bounded: a server that accepts connections but does not answer yet
# must not stall startup past its deadline.
PING_TIMEOUT_SECONDS = 1.0
START_ATTEMPTS = 3


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server could not be started or stopped answering."""


class _PortUnavailableError(EmbeddedDatabaseError):
    """Our server could not serve on the chosen port (taken, or it exited while starting)."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_executable() -> str:
    """Locate ``secantusd-py`` next to the running interpreter first, then on PATH."""
    beside = Path(sys.executable).parent / EXECUTABLE_NAME
    if beside.exists():
        return str(beside)
    found = shutil.which(EXECUTABLE_NAME)
    if found is None:
        raise EmbeddedDatabaseError(
            f"{EXECUTABLE_NAME} not found: install the 'secantusdb' package or set MONGO_URI"
        )
    return found


class EmbeddedMongo:
    """A SecantusDB server process.

    ``storage_path`` is a directory (created if missing) or ``":memory:"`` for an ephemeral
    database. ``start()`` returns once the server answers a ping; ``stop()`` terminates it.
    """

    def __init__(
        self,
        *,
        storage_path: str | Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 60.0,
        sync_on_commit: bool = True,
    ) -> None:
        self.storage_path = str(storage_path)
        self.host = host
        self._port_given = port is not None
        self.port = port or find_free_port(host)
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.sync_on_commit = sync_on_commit
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False

    @property
    def uri(self) -> str:
        # Built from host and port: SecantusDB's own uri attribute ends in "/", which PyMongo
        # rejects when options follow.
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def _command(self) -> list[str]:
        command = [
            find_executable(),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--storage-path",
            self.storage_path,
            "--log-level",
            "WARNING",
        ]
        if self.sync_on_commit:
            command.append("--sync-on-commit")
        return command

    async def start(self) -> str:
        """Start the server and wait until it answers; returns the connection URI.

        The free port is chosen before the server binds it, so another process may take it in
        between; the server that answers must therefore be ours (``serverStatus.pid``). If it
        is not, or ours exited during startup (it could not bind), the start is retried on a
        new port, unless the port was given explicitly.
        """
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return await self._start_once()
            except _PortUnavailableError as exc:
                await self.stop()
                self._stopping = False
                if self._port_given or attempt == START_ATTEMPTS:
                    raise EmbeddedDatabaseError(str(exc)) from exc
                self.port = find_free_port(self.host)
            except BaseException:
                # Cancelled (Ctrl-C during startup) or failed: never leave the server behind.
                await asyncio.shield(self.stop())
                raise
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _start_once(self) -> str:
        log_file = await asyncio.to_thread(self._prepare_paths)
        output: Any = log_file if log_file is not None else asyncio.subprocess.DEVNULL
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
        finally:
            if log_file is not None:
                log_file.close()
        await self._wait_until_ready()
        return self.uri

    def _prepare_paths(self) -> BinaryIO | None:
        if self.storage_path != ":memory:":
            Path(self.storage_path).mkdir(parents=True, exist_ok=True)
        if self.log_path is None:
            return None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        return self.log_path.open("ab")

    async def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        client: MongoClient = AsyncMongoClient(
            self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500
        )
        try:
            while True:
                if not self.is_running:
                    raise _PortUnavailableError(
                        f"embedded database exited during startup (code "
                        f"{self._process.returncode if self._process else '?'}); "
                        f"see {self.log_path or 'its output'}"
                    )
                answering = await self._answering_pid(client)
                if answering is not None:
                    if self._process is not None and answering == self._process.pid:
                        return
                    raise _PortUnavailableError(
                        f"port {self.port} is held by another server (pid {answering})"
                    )
                if time.monotonic() > deadline:
                    await self.stop()
                    raise EmbeddedDatabaseError(
                        f"embedded database did not answer within {self.startup_timeout:.0f}s"
                    )
                await asyncio.sleep(0.1)
        finally:
            await client.close()

    async def _answering_pid(self, client: MongoClient) -> int | None:
        """The pid of the server answering on our port, or None while nothing answers.

        A server that does not report its pid is taken to be ours.
        """
        try:
            with pymongo.timeout(PING_TIMEOUT_SECONDS):
                status = await client.admin.command("serverStatus")
        except PyMongoError:
            return None
        pid = status.get("pid")
        if isinstance(pid, int):
            return pid
        return self._process.pid if self._process is not None else None

    async def wait_exited(self) -> int:
        """Block until the process exits; returns its exit code."""
        if self._process is None:
            return 0
        return await self._process.wait()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``grace_seconds``)."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        self._stopping = True
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace_seconds)
        except TimeoutError:
            process.kill()
            await process.wait()
