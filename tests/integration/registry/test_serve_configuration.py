"""``mcp-registry serve`` refuses a configuration it cannot run with: one line, exit 2.

These errors came out as tracebacks: a pydantic ValidationError from reading the settings, or
uvicorn's "Exception in 'lifespan' protocol" traceback and "Application startup failed" (exit
3) for the checks made while the application started.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import TEST_CREDS_KEY
from tests.support.service import SERVE, service_env


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"CREDS_KEY": "0123abc"},
            "mcp-registry: CREDS_KEY must be exactly 64 hexadecimal characters",
            id="creds-key-malformed",
        ),
        pytest.param(
            {"CREDS_IV": "zz" * 16},
            "mcp-registry: CREDS_IV must be exactly 32 hexadecimal characters",
            id="creds-iv-malformed",
        ),
        pytest.param(
            {"MONGO_URI": "mongodb://127.0.0.1:9/", "JWT_SECRET": "s" * 32},
            "mcp-registry: CREDS_KEY and CREDS_IV must be set when MONGO_URI is set",
            id="mongo-uri-without-keys",
        ),
        pytest.param(
            {"MONGO_URI": "mongodb://127.0.0.1:9/", "CREDS_KEY": TEST_CREDS_KEY},
            "mcp-registry: CREDS_IV must be set when MONGO_URI is set",
            id="mongo-uri-without-iv",
        ),
        pytest.param(
            {"SCHEMA_VERSION": "v9.9.9"},
            "mcp-registry: Generated models are v0.0.31 but SCHEMA_VERSION is v9.9.9. "
            "Run: python scripts/generate_schemas.py --version v9.9.9",
            id="schema-version-mismatch",
        ),
    ],
)
def test_serve_invalid_configuration_one_line_exit_2(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [str(SERVE), "serve"],
        env=service_env(tmp_path, PORT="0", **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything was started or written
