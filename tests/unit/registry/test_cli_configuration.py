"""Subcommands report an invalid setting in one line (exit 2), never as a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.cli import main
from registry.config import get_settings


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """The commands read the cached process settings: read them from this test's environment."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_token_create_malformed_key_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CREDS_KEY", "abc")

    status = main(["token", "create", "--user-id", "0123456789abcdef01234567"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err == "mcp-registry: CREDS_KEY must be exactly 64 hexadecimal characters\n"


def test_import_servers_malformed_setting_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """import-servers read the settings itself; a ValidationError escaped as a traceback."""
    monkeypatch.setenv("PORT", "eighty")

    status = main(["import-servers", str(tmp_path), "--author", "0123456789abcdef01234567"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith("mcp-registry import-servers: PORT: Input should be a valid")
    assert len(captured.err.splitlines()) == 1


def test_rotate_creds_malformed_setting_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """rotate-creds caught ValueError and printed pydantic's multi-line ValidationError."""
    monkeypatch.setenv("CREDS_IV", "zz")

    status = main(["rotate-creds", "--new-key", "ab" * 32, "--dry-run"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert "CREDS_IV" in captured.err
    assert len(captured.err.splitlines()) == 1
    assert "ab" * 32 not in captured.err
