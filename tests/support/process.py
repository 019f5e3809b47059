"""Start ``tests.support.upstream_main`` as a subprocess and wait until it listens."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.asgi_server import HOST, START_TIMEOUT_SECONDS, STOP_TIMEOUT_SECONDS
from tests.support.upstreams import UpstreamSpec

_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class UpstreamProcess:
    spec: UpstreamSpec
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.spec.path}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _arguments(spec: UpstreamSpec, port: int) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "tests.support.upstream_main",
        "--port",
        str(port),
        "--transport",
        spec.transport,
        "--auth",
        spec.auth,
        "--custom-header",
        spec.custom_header,
        "--delay-seconds",
        str(spec.delay_seconds),
        "--name",
        spec.name,
    ]
    if spec.api_key is not None:
        args += ["--api-key", spec.api_key]
    if spec.stateless:
        args.append("--stateless")
    if spec.json_response:
        args.append("--json-response")
    return args


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("upstream process did not start")
        time.sleep(0.02)


@contextlib.contextmanager
def start_upstream_process(
    spec: UpstreamSpec | None = None, *, port: int | None = None
) -> Iterator[UpstreamProcess]:
    """Run an upstream in its own Python process for the duration of the block."""
    spec = spec or UpstreamSpec()
    port = port or free_port()
    process = subprocess.Popen(_arguments(spec, port), cwd=_REPO_ROOT)
    try:
        _wait_listening(process, port)
        yield UpstreamProcess(spec=spec, port=port, process=process)
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
