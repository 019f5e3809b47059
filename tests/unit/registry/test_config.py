"""Configuration: validation at startup, development secrets, refusal without keys."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.bootstrap import ConfigurationError, check_startup, load_settings, resolve_settings
from registry.config import Settings, get_settings

README = Path(__file__).parents[3] / "README.md"

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


def test_resolve_embedded_second_start_reports_secrets_loaded_not_generated(
    tmp_path: Path,
) -> None:
    """Every start logged development_secrets_generated, also when they were only read back."""
    resolve_settings(Settings(data_dir=tmp_path))

    second = resolve_settings(Settings(data_dir=tmp_path))

    assert second.generated_secrets == ()
    assert set(second.loaded_secrets) == {"CREDS_KEY/CREDS_IV", "JWT_SECRET"}


def test_resolve_embedded_completes_a_partial_secrets_file(tmp_path: Path) -> None:
    (tmp_path / "dev-secrets.json").write_text(json.dumps({"CREDS_KEY": KEY, "CREDS_IV": IV}))

    boot = resolve_settings(Settings(data_dir=tmp_path))

    assert boot.generated_secrets == ("JWT_SECRET",)
    assert boot.loaded_secrets == ("CREDS_KEY/CREDS_IV",)
    stored = json.loads((tmp_path / "dev-secrets.json").read_text())
    assert boot.settings.jwt_secret is not None
    assert stored["JWT_SECRET"] == boot.settings.jwt_secret.get_secret_value()
    assert stored["CREDS_KEY"] == KEY


def test_resolve_embedded_malformed_stored_key_names_file_and_variable(tmp_path: Path) -> None:
    path = tmp_path / "dev-secrets.json"
    path.write_text(json.dumps({"CREDS_KEY": "abc", "CREDS_IV": IV}))

    with pytest.raises(ConfigurationError, match="CREDS_KEY") as refused:
        resolve_settings(Settings(data_dir=tmp_path))

    assert str(path) in str(refused.value)
    assert "abc" not in str(refused.value)


def test_resolve_embedded_keeps_configured_keys(tmp_path: Path) -> None:
    boot = resolve_settings(Settings(data_dir=tmp_path, creds_key=KEY, creds_iv=IV, jwt_secret="x"))
    assert boot.generated_secrets == ()
    assert boot.settings.creds_key is not None
    assert boot.settings.creds_key.get_secret_value() == KEY


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CREDS_KEY", "abc", "CREDS_KEY must be exactly 64 hexadecimal characters"),
        ("CREDS_IV", "zz", "CREDS_IV must be exactly 32 hexadecimal characters"),
        ("PORT", "eighty", "PORT: Input should be a valid integer"),
    ],
)
def test_load_settings_invalid_value_is_one_line_naming_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv(name, value)
    try:
        with pytest.raises(ConfigurationError) as refused:
            load_settings()
    finally:
        get_settings.cache_clear()
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)
    assert value not in str(refused.value)


def test_check_startup_schema_version_mismatch_names_command() -> None:
    with pytest.raises(ConfigurationError, match=r"generate_schemas\.py --version v9\.9\.9"):
        check_startup(Settings(schema_version="v9.9.9"))


def test_check_startup_external_mongo_without_keys_refuses() -> None:
    with pytest.raises(ConfigurationError, match="CREDS_KEY and CREDS_IV must be set"):
        check_startup(Settings(mongo_uri="mongodb://db.example:27017", jwt_secret="s"))


def test_check_startup_embedded_writes_nothing(tmp_path: Path) -> None:
    check_startup(Settings(data_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_readme_configuration_table_lists_every_setting() -> None:
    """REGISTRY_MONGO_TIMEOUT_SECONDS and REGISTRY_JWT_REFRESH_EXPIRES_HOURS were missing."""
    readme = README.read_text(encoding="utf-8")
    missing = [
        field.validation_alias
        for field in Settings.model_fields.values()
        if f"| `{field.validation_alias}`" not in readme
        and f"/ `{field.validation_alias}`" not in readme
    ]
    assert missing == []
