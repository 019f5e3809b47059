"""Gateway e2e tests run against real upstream MCP servers from ``tests.support``."""

from tests.support.fixtures import upstream_factory

__all__ = ["upstream_factory"]
