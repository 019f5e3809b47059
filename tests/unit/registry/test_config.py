"""Configuration: validation at startup, development secrets, refusal without keys."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.bootstrap import ConfigurationError, resolve_settings
from registry.config import Settings

KEY = "ab" * 32
IV = "cd" * 16


def test_settings_defaults_need_no_environment() -> None:
    settings = Settings()
    assert settings.is_embedded
    assert settings.mongo_db == "jarvis"
    assert settings.port == 8000
    assert settings.schema_version == "v0.0.31"


def test_settings_read_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGO_URI", "mongodb://db.example:27017")
    monkeypatch.setenv("MONGO_DB", "other")
    monkeypatch.setenv("CREDS_KEY", KEY.upper())
    monkeypatch.setenv("CREDS_IV", IV)
    monkeypatch.setenv("PORT", "9001")
    settings = Settings()
    assert not settings.is_embedded
    assert settings.mongo_db == "other"
    assert settings.port == 9001
    assert settings.creds_key is not None
    assert settings.creds_key.get_secret_value() == KEY


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CREDS_KEY", "abc"),
        ("CREDS_KEY", "zz" * 32),
        ("CREDS_IV", "00" * 15),
        ("CREDS_IV", "g" * 32),
    ],
)
def test_settings_malformed_key_names_variable_not_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as excinfo:
        Settings()
    message = str(excinfo.value)
    assert name in message
    assert value not in message


def test_resolve_external_mongo_without_keys_refuses() -> None:
    settings = Settings(mongo_uri="mongodb://db.example:27017", jwt_secret="s")
    with pytest.raises(ConfigurationError, match="CREDS_KEY and CREDS_IV must be set"):
        resolve_settings(settings)


def test_resolve_external_mongo_without_jwt_key_refuses() -> None:
    settings = Settings(mongo_uri="mongodb://db.example:27017", creds_key=KEY, creds_iv=IV)
    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        resolve_settings(settings)


def test_resolve_embedded_generates_secrets_once_with_private_mode(tmp_path: Path) -> None:
    first = resolve_settings(Settings(data_dir=tmp_path))
    assert first.first_run
    assert set(first.generated_secrets) == {"CREDS_KEY/CREDS_IV", "JWT_SECRET"}
    secrets_file = tmp_path / "dev-secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    stored = json.loads(secrets_file.read_text())
    assert first.settings.creds_key is not None
    assert first.settings.creds_key.get_secret_value() == stored["CREDS_KEY"]

    second = resolve_settings(Settings(data_dir=tmp_path))
    assert not second.first_run
    assert second.settings.creds_key == first.settings.creds_key
    assert second.settings.jwt_secret == first.settings.jwt_secret


def test_resolve_embedded_keeps_configured_keys(tmp_path: Path) -> None:
    boot = resolve_settings(Settings(data_dir=tmp_path, creds_key=KEY, creds_iv=IV, jwt_secret="x"))
    assert boot.generated_secrets == ()
    assert boot.settings.creds_key is not None
    assert boot.settings.creds_key.get_secret_value() == KEY
