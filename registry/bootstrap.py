"""Startup configuration checks and the development-mode secrets file.

In embedded (development) mode, missing secrets are generated once into a 0600 file in the data
directory so a newcomer can run the service with no configuration. With ``MONGO_URI`` set the
service never invents secrets: it refuses to start instead.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from packages.database.encryption import generate_key_material
from registry.config import Settings

DEV_SECRETS_FILE = "dev-secrets.json"


class ConfigurationError(RuntimeError):
    """The configuration cannot run the service; the message says what to set."""


@dataclass(frozen=True)
class Bootstrap:
    settings: Settings
    generated_secrets: tuple[str, ...]
    secrets_file: Path | None
    first_run: bool = False
    dev_admin_id: str | None = None


def _read_secrets_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read development secrets file {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigurationError(f"development secrets file {path} is malformed")
    return data


def _write_secrets_file(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(values, handle, indent=2)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def resolve_settings(settings: Settings) -> Bootstrap:
    """Return settings ready to run with, generating dev secrets in embedded mode.

    Raises ConfigurationError when an external MongoDB is configured without encryption keys
    or without a JWT verification key.
    """
    if not settings.is_embedded:
        missing = [
            name
            for name, value in (("CREDS_KEY", settings.creds_key), ("CREDS_IV", settings.creds_iv))
            if value is None
        ]
        if missing:
            raise ConfigurationError(
                f"{' and '.join(missing)} must be set when MONGO_URI is set: credentials are "
                "always stored encrypted (64 and 32 hex characters, the external app's keys)"
            )
        if settings.jwt_secret is None and settings.jwt_public_key is None:
            raise ConfigurationError(
                "JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256) must be set when MONGO_URI is set"
            )
        return Bootstrap(settings=settings, generated_secrets=(), secrets_file=None)

    path = settings.data_dir / DEV_SECRETS_FILE
    stored = _read_secrets_file(path) if path.exists() else {}
    generated: list[str] = []
    if "CREDS_KEY" not in stored or "CREDS_IV" not in stored:
        key_hex, iv_hex = generate_key_material()
        stored.setdefault("CREDS_KEY", key_hex)
        stored.setdefault("CREDS_IV", iv_hex)
    if "JWT_SECRET" not in stored:
        stored["JWT_SECRET"] = secrets.token_hex(32)
    if "DEV_ADMIN_ID" not in stored:
        stored["DEV_ADMIN_ID"] = secrets.token_hex(12)
    updates: dict[str, object] = {}
    if settings.creds_key is None or settings.creds_iv is None:
        generated.append("CREDS_KEY/CREDS_IV")
        updates["creds_key"] = settings.creds_key or SecretStr(stored["CREDS_KEY"])
        updates["creds_iv"] = settings.creds_iv or SecretStr(stored["CREDS_IV"])
    if settings.jwt_secret is None and settings.jwt_public_key is None:
        generated.append("JWT_SECRET")
        updates["jwt_secret"] = SecretStr(stored["JWT_SECRET"])
    first_run = bool(generated) and not path.exists()
    if first_run:
        _write_secrets_file(path, stored)
    resolved = settings.model_copy(update=updates)
    return Bootstrap(
        settings=resolved,
        generated_secrets=tuple(generated),
        secrets_file=path,
        first_run=first_run,
        dev_admin_id=stored["DEV_ADMIN_ID"],
    )
