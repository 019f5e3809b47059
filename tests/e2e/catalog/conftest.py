"""Catalog e2e tests: real upstream MCP servers, the app with its sync worker switched off."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.config import Settings
from tests.conftest import make_settings
from tests.e2e.gateway.conftest import gateway_service
from tests.support.fixtures import upstream_factory

__all__ = ["gateway_service", "upstream_factory"]


@pytest.fixture
def settings(mongo_uri: str, db_name: str, tmp_path: Path) -> Settings:
    return make_settings(
        mongo_uri=mongo_uri, db_name=db_name, data_dir=tmp_path, sync_enabled=False
    )
