"""Launch and supervise an embedded MongoDB-wire-compatible server (SecantusDB).

Used for zero-configuration development runs and for the test suite. The server runs as a
child process bound to loopback only, in its own session (a terminal's Ctrl-C reaches the
service, which stops the server itself) and, on Linux, dying with its parent (a hard-killed
service leaves no server behind holding the data files).

Exceptions::

    EmbeddedDatabaseError       the server could not be started or stopped answering
     └── StorageInUseError      another process holds the storage directory
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from packages.database.connection import MongoClient

if sys.platform != "win32":
    import fcntl

EXECUTABLE_NAME = "secantusd-py"
# Each readiness ping is bounded: a server that accepts connections but does not answer yet
# must not stall startup past its deadline.
PING_TIMEOUT_SECONDS = 1.0
START_ATTEMPTS = 3
LOCK_SUFFIX = ".lock"
# From <linux/prctl.h>: the signal the kernel sends a process when its parent dies.
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_BYTES = 4096
_LOG_LINE_CHARS = 300


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server could not be started or stopped answering."""


class StorageInUseError(EmbeddedDatabaseError):
    """The storage directory is locked by another live process.

    ``pid`` is the process recorded in the lock file (the database server holding the files,
    or the service that is starting it), ``None`` when the file does not name one yet.
    """

    def __init__(self, *, storage_path: str, pid: int | None) -> None:
        self.storage_path = storage_path
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"storage directory {storage_path} is in use by {holder}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(storage_path={self.storage_path!r}, pid={self.pid!r})"


class _PortUnavailableError(EmbeddedDatabaseError):
    """Our server could not serve on the chosen port (another process holds it)."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when its parent dies (Linux).

    Without it a service killed with SIGKILL leaves the server running (reparented to pid 1),
    holding the storage directory, and the next start fails. The kernel ties the signal to
    the *thread* that forked the child: the event loop's thread, which lives as long as the
    server is supervised. Elsewhere there is no equivalent; the storage lock then makes the
    next start fail with a message naming the leftover process.
    """
    if not sys.platform.startswith("linux"):
        return None
    # Resolved in the parent: the child should do as little as possible between fork and exec.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _last_log_line(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:_LOG_LINE_CHARS] if lines else None


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

    A storage directory is locked for as long as the server runs: ``<storage_path>.lock``
    holds an advisory lock (shared with the server process, so a server that outlives us
    keeps it) and the pid of the server. A second ``start()`` on the same directory fails at
    once with ``StorageInUseError`` instead of a storage-engine error after retries.
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
        self._lock_fd: int | None = None

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

    @property
    def lock_path(self) -> Path | None:
        """The lock file guarding the storage directory (``None`` for ``:memory:``)."""
        if self.storage_path == ":memory:":
            return None
        storage = Path(self.storage_path)
        return storage.with_name(storage.name + LOCK_SUFFIX)

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
        is not, or ours exited during startup while another process holds the port, the start
        is retried on a new port, unless the port was given explicitly. Any other exit during
        startup fails at once with the last line of the server's log.

        Raises:
            StorageInUseError: another live process holds the storage directory.
            EmbeddedDatabaseError: the server exited during startup, the port was taken
                (on every attempt), or it did not answer within ``startup_timeout``.
        """
        self._stopping = False
        try:
            await asyncio.to_thread(self._lock_storage)
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    return await self._start_once()
                except _PortUnavailableError as exc:
                    await self._terminate()
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
                # Its own session: a terminal's SIGINT goes to the service's process group
                # only, and the service stops the server (it used to exit first and look like
                # a crash).
                start_new_session=True,
                preexec_fn=_die_with_parent(),
                pass_fds=() if self._lock_fd is None else (self._lock_fd,),
            )
        finally:
            if log_file is not None:
                log_file.close()
        self._record_lock_holder(self._process.pid)
        await self._wait_until_ready()
        return self.uri

    def _lock_storage(self) -> None:
        lock_path = self.lock_path
        if lock_path is None or sys.platform == "win32":
            return
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StorageInUseError(storage_path=self.storage_path, pid=holder) from None
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        self._record_lock_holder(os.getpid())

    def _record_lock_holder(self, pid: int) -> None:
        if self._lock_fd is None:
            return
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"{pid}\n".encode(), 0)

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            # Closing releases our share of the lock; the server's inherited copy went with it.
            os.close(fd)

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
                    self._raise_exited_during_startup()
                answering = await self._answering_pid(client)
                if answering is not None:
                    if self._process is not None and answering == self._process.pid:
                        return
                    raise _PortUnavailableError(
                        f"port {self.port} is held by another server (pid {answering})"
                    )
                if time.monotonic() > deadline:
                    raise EmbeddedDatabaseError(
                        f"embedded database did not answer within {self.startup_timeout:.0f}s"
                    )
                await asyncio.sleep(0.1)
        finally:
            await client.close()

    def _raise_exited_during_startup(self) -> NoReturn:
        code = self._process.returncode if self._process is not None else None
        if _port_in_use(self.host, self.port):
            raise _PortUnavailableError(
                f"embedded database exited during startup (code {code}): port {self.port} "
                "is held by another process"
            )
        # Not a lost port race (a locked or corrupt storage directory, a bad option):
        # retrying on another port would only fail again, slower.
        last_line = _last_log_line(self.log_path)
        raise EmbeddedDatabaseError(
            f"embedded database exited during startup (code {code})"
            + (f": {last_line}" if last_line else "")
            + f"; see {self.log_path or 'its output'}"
        )

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
        """Terminate the server (SIGTERM, then SIGKILL after ``grace_seconds``), unlock storage."""
        self._stopping = True
        try:
            await self._terminate(grace_seconds)
        finally:
            self._release_lock()

    async def _terminate(self, grace_seconds: float = 10.0) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):  # exited, not reaped yet
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace_seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
