"""The real ``mcp-registry serve`` process in zero-configuration (embedded database) mode.

Signals, a hard kill, a second service on the same data, a dying database and JSON logging:
behaviours of processes, so they are tested with real ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from bson import ObjectId
from pymongo import MongoClient

from tests.support.service import (
    SERVE,
    is_alive,
    running_service,
    service_env,
    wait_for,
)

# SecantusDB takes about 2 s to stop; the rest of a shutdown is well under a second.
SHUTDOWN_BOUND_SECONDS = 6.0


def _client(port: int) -> MongoClient[dict[str, object]]:
    return MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true")


def test_serve_ctrl_c_to_process_group_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    """Ctrl-C in a terminal was reported as a crash of the embedded database (exit 1, ~10 s).

    The terminal sends SIGINT to the whole foreground process group; the database server was
    in it, exited first, and the watchdog took that for a crash.
    """
    marker = ObjectId()
    with running_service(tmp_path) as service:
        service.wait_ready()
        with _client(service.embedded_port()) as client:
            client["jarvis"]["mcpservers"].insert_one({"_id": marker, "serverName": "kept"})
        database_pid = service.embedded_pid()
        started = time.monotonic()
        service.signal_group(signal.SIGINT)
        code = service.wait_exit()
        elapsed = time.monotonic() - started
        output = service.output

    assert code == 0, output
    assert "embedded_database_exited" not in output
    assert "stopped because" not in output
    assert "Traceback" not in output
    assert elapsed < SHUTDOWN_BOUND_SECONDS
    assert not is_alive(database_pid)

    with running_service(tmp_path) as again:
        again.wait_ready()
        with _client(again.embedded_port()) as client:
            stored = client["jarvis"]["mcpservers"].find_one({"_id": marker})
        again.process.terminate()
        assert again.wait_exit() == 0
    assert stored is not None and stored["serverName"] == "kept"


def test_serve_killed_hard_takes_its_database_down(tmp_path: Path) -> None:
    """After ``kill -9`` of the service its database kept running (reparented to pid 1) and
    held the data directory, so the next ``make run`` failed."""
    with running_service(tmp_path) as service:
        service.wait_ready()
        database_pid = service.embedded_pid()
        service.process.kill()
        service.wait_exit()

        wait_for(
            lambda: not is_alive(database_pid),
            timeout=10,
            message="the embedded database outlived the killed service",
        )


def test_serve_second_service_on_same_data_dir_fails_fast_with_clear_message(
    tmp_path: Path,
) -> None:
    """A second service on a data directory in use failed after ~11 s with a misleading
    "exited during startup (code 1)", after retrying on new ports."""
    with running_service(tmp_path) as first:
        first.wait_ready()
        database_pid = first.embedded_pid()
        started = time.monotonic()
        second = subprocess.run(
            [str(SERVE), "serve"],
            env=service_env(tmp_path, PORT="0", REGISTRY_LOG_FORMAT="json"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        elapsed = time.monotonic() - started
        assert first.is_ready()

    last_line = second.stderr.strip().splitlines()[-1]
    assert second.returncode == 2, second.stderr
    assert last_line == (
        f"mcp-registry: data directory {tmp_path.resolve()} is in use by pid {database_pid} "
        "(another mcp-registry or a leftover database process); stop it or use another "
        "REGISTRY_DATA_DIR"
    )
    assert "Traceback" not in second.stderr
    assert elapsed < 10


def test_serve_exits_with_message_when_embedded_database_dies(tmp_path: Path) -> None:
    """Shutting down after the database died took ~10 s: closing the MongoDB client waited
    for the full server-selection timeout to end its sessions."""
    with running_service(tmp_path, LOG_LEVEL="WARNING", REGISTRY_LOG_FORMAT="console") as service:
        service.wait_ready()
        started = time.monotonic()
        os.kill(service.embedded_pid(), signal.SIGKILL)
        code = service.wait_exit(timeout=60)
        elapsed = time.monotonic() - started
        output = service.output

    assert code == 1
    assert "embedded_database_exited" in output
    assert "mcp-registry: stopped because the embedded database exited" in output
    assert "Development admin token" in output
    assert elapsed < 4


def test_serve_json_log_format_every_line_is_json(tmp_path: Path) -> None:
    """uvicorn's and other standard-library records were plain text among the JSON lines."""
    with running_service(tmp_path, REGISTRY_LOG_FORMAT="json", LOG_LEVEL="INFO") as service:
        service.wait_ready()
        service.process.terminate()
        code = service.wait_exit()
        lines = [line for line in service.lines if line.strip()]

    assert code == 0
    records = [json.loads(line) for line in lines]
    events = {record["event"] for record in records}
    assert {"service_started", "development_admin_created", "service_stopped"} <= events
    assert any(
        record.get("logger") == "uvicorn.error" and record["event"].startswith("Started server")
        for record in records
    )
    assert all("level" in record and "timestamp" in record for record in records)
    # The bearer token stays out of the structured log; the event says how to mint one.
    admin = next(r for r in records if r["event"] == "development_admin_created")
    assert admin["command"].startswith("mcp-registry token create --user-id ")
    assert "Development admin token" not in "".join(lines)
