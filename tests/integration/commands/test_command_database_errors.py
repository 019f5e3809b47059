"""Operator commands report a database they cannot open in one line, never a traceback."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

COMMAND = [sys.executable, "-m", "registry.cli"]


@pytest.fixture
def held_data_dir(tmp_path: Path) -> Iterator[Path]:
    """An embedded data directory whose storage lock another process (pid 4242) holds."""
    fd = os.open(tmp_path / "mongo.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242\n")
    try:
        yield tmp_path
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["rotate-creds", "--new-key", "ab" * 32, "--dry-run"], "rotate-creds"),
        (["import-servers", ".", "--author", "0123456789abcdef01234567"], "import-servers"),
    ],
)
def test_command_data_directory_in_use_one_line_exit_2(
    held_data_dir: Path, argv: list[str], command: str
) -> None:
    """A rotate-creds left behind by a killed run held the directory; the next run failed
    with an EmbeddedDatabaseError traceback after ~11 s of retries."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"MONGO_URI", "CREDS_KEY", "CREDS_IV", "JWT_SECRET"}
    }
    env["REGISTRY_DATA_DIR"] = str(held_data_dir)

    done = subprocess.run(
        [*COMMAND, *argv], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        f"mcp-registry {command}: data directory {held_data_dir.resolve()} is in use by pid 4242 "
        "(another mcp-registry or a leftover database process); stop it or use another "
        "REGISTRY_DATA_DIR"
    )
    assert "Traceback" not in done.stderr
