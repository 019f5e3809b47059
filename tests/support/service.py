"""Run the real ``mcp-registry serve`` console script as a process, and clean up after it.

The service runs in its own session, like a program started from a terminal, so a test can
signal its whole process group. On exit the service and any embedded database server left
on its data directory are killed, whatever the test did.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packages.database.embedded import find_free_port

SERVE = Path(sys.executable).parent / "mcp-registry"
START_TIMEOUT_SECONDS = 60.0
_ENV_PREFIXES = ("MONGO_", "CREDS_", "JWT_", "REGISTRY_", "SCHEMA_")
_ENV_NAMES = ("HOST", "PORT", "LOG_LEVEL")
_EMBEDDED_URI = re.compile(r"mongodb://127\.0\.0\.1:(\d+)")
_POLL_SECONDS = 0.05


def service_env(data_dir: Path, **values: str) -> dict[str, str]:
    """The test process's environment without the service's settings, plus ``values``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_ENV_PREFIXES) and name not in _ENV_NAMES
    }
    env["REGISTRY_DATA_DIR"] = str(data_dir)
    env.update(values)
    return env


def embedded_pids(data_dir: Path) -> list[int]:
    """Live SecantusDB servers storing their files under ``data_dir``."""
    found = subprocess.run(
        ["pgrep", "-f", f"secantusd-py.*{data_dir}"], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in found.stdout.split() if is_alive(int(pid))]


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition: Callable[[], object], *, timeout: float, message: str) -> None:
    """Poll ``condition()`` until it is truthy; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(_POLL_SECONDS)


@dataclass
class ServiceProcess:
    process: subprocess.Popen[str]
    port: int
    data_dir: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def output(self) -> str:
        """Everything the service wrote so far (stdout and stderr, interleaved)."""
        return "".join(self.lines)

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"service exited during startup:\n{self.output}"
            return self.is_ready()

        wait_for(ready, timeout=START_TIMEOUT_SECONDS, message="service not ready in time")

    def embedded_port(self) -> int:
        """The embedded database's port, as the service logged it."""
        match = _EMBEDDED_URI.search(self.output)
        assert match is not None, f"no embedded database URI logged:\n{self.output}"
        return int(match.group(1))

    def embedded_pid(self) -> int:
        pids = embedded_pids(self.data_dir)
        assert len(pids) == 1, pids
        return pids[0]

    def signal_group(self, signum: int) -> None:
        """What a terminal does on Ctrl-C: signal every process in the foreground group."""
        os.killpg(self.process.pid, signum)

    def wait_exit(self, *, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        if self.reader is not None:
            self.reader.join(timeout)
        return code


def _collect(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)


@contextlib.contextmanager
def running_service(data_dir: Path, **env: str) -> Iterator[ServiceProcess]:
    """Start ``mcp-registry serve`` on a free port with its data under ``data_dir``."""
    port = find_free_port()
    process = subprocess.Popen(
        [str(SERVE), "serve"],
        env=service_env(data_dir, PORT=str(port), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    service = ServiceProcess(process=process, port=port, data_dir=data_dir)
    service.reader = threading.Thread(target=_collect, args=(process, service.lines))
    service.reader.start()
    try:
        yield service
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        service.wait_exit()
        assert process.stdout is not None
        process.stdout.close()
        for pid in embedded_pids(data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
