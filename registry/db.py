"""The Beanie document models the service registers, and database initialisation."""

from __future__ import annotations

from typing import Any

from beanie import Document, init_beanie
from pymongo.asynchronous.database import AsyncDatabase

from packages.models import MCPServer, Token
from packages.models.audit import AuditLog
from packages.models.tools import SyncRun, SyncSchedule, Tool, ToolVersion


def document_models() -> list[type[Document]]:
    """Every document class the service reads or writes (shared and registry-owned)."""
    models: list[type[Document]] = [MCPServer, Token, AuditLog]
    models += [Tool, ToolVersion, SyncRun, SyncSchedule]  # tool catalog (docs/catalog.md)
    return models


async def init_database(database: AsyncDatabase[dict[str, Any]]) -> None:
    """Bind the document models to ``database`` and create their indexes.

    ``allow_index_dropping`` stays off: the database is shared with the external app, and an
    index it created must never be dropped by us.
    """
    await init_beanie(
        database=database, document_models=document_models(), allow_index_dropping=False
    )
