"""The objects a running service shares between requests (built once in the lifespan)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from packages.database.connection import MongoClient
from packages.database.embedded import EmbeddedMongo
from packages.database.encryption import EncryptionService
from registry.auth import TokenIssuer, TokenVerifier
from registry.config import Settings
from registry.gateway.connection_state import ConnectionStateStore


@dataclass
class Runtime:
    settings: Settings
    client: MongoClient
    database: AsyncDatabase[dict[str, Any]]
    encryption: EncryptionService
    verifier: TokenVerifier
    issuer: TokenIssuer
    embedded: EmbeddedMongo | None = None
    connection_states: ConnectionStateStore = field(default_factory=ConnectionStateStore)
    extras: dict[str, Any] = field(default_factory=dict)
