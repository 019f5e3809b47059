"""The real ``mcp-registry serve`` process in zero-configuration (embedded database) mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from packages.database.embedded import find_free_port

SERVE = Path(sys.executable).parent / "mcp-registry"


def _wait_ready(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        assert process.poll() is None, "service exited during startup"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail("service did not become ready within 60 s")


def _embedded_pids(data_dir: Path) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", f"secantusd-py.*{data_dir}"], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in found.stdout.split()]


def test_serve_exits_with_message_when_embedded_database_dies(tmp_path: Path) -> None:
    port = find_free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MONGO_", "CREDS_", "JWT_", "REGISTRY_"))
    }
    env.update({"REGISTRY_DATA_DIR": str(tmp_path), "PORT": str(port), "LOG_LEVEL": "WARNING"})
    process = subprocess.Popen(
        [str(SERVE), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait_ready(port, process, time.monotonic() + 60)
        pids = _embedded_pids(tmp_path)
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    text = output.decode()
    assert process.returncode == 1
    assert "embedded_database_exited" in text
    assert "mcp-registry: stopped because the embedded database exited" in text
    assert "Development admin token" in text
