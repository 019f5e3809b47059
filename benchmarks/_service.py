"""What the benchmarks share: the registry service in its own process, and registering a server.

Imported by the scripts in this folder after they put the project root on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=1) as response,  # noqa: S310 - loopback
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def registry_process(
    port: int, env: dict[str, str], log_path: Path, command: Sequence[str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``mcp-registry serve`` (or ``command``) in its own process, ready, until the block ends."""
    argv = list(command or [sys.executable, "-m", "registry.cli", "serve", "--port", str(port)])
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/ready")
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def register(
    base_url: str, admin_headers: dict[str, str], upstream_url: str, *, timeout: float = 60
) -> dict[str, Any]:
    """Register the upstream as the shared server ``bench``; the created server."""
    body = json.dumps(
        {
            "serverName": "bench",
            "type": "streamable-http",
            "url": upstream_url,
            "scope": "shared_app",
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base_url}/api/v1/servers",
        data=body,
        headers={**admin_headers, "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
        assert response.status == 201, response.status
        created: dict[str, Any] = json.loads(response.read())
        return created


def database_uri(log_path: Path) -> tuple[str, str]:
    """The embedded database's URI and the database name, from the service's JSON log."""
    uri = database = None
    for line in log_path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("event") == "embedded_database_started":
            uri = event["uri"]
        elif event.get("event") == "service_started":
            database = event["database"]
    if uri is None or database is None:
        raise RuntimeError("the service did not log its embedded database")
    return uri, database
