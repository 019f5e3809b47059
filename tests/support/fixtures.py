"""Pytest fixtures for real upstream MCP servers.

Enable globally with ``pytest_plugins = ["tests.support.fixtures"]`` in the root conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from tests.support.upstreams import RunningUpstream, UpstreamSpec


class UpstreamFactory(Protocol):
    def __call__(self, spec: UpstreamSpec | None = None, /, **fields: Any) -> RunningUpstream:
        """Start an upstream from ``spec`` (or ``UpstreamSpec(**fields)``) and return it."""
        ...


@pytest.fixture
def upstream_factory() -> Iterator[UpstreamFactory]:
    """Start any number of upstreams; all are stopped (and their threads joined) at teardown."""
    started: list[RunningUpstream] = []

    def start(spec: UpstreamSpec | None = None, /, **fields: Any) -> RunningUpstream:
        upstream = RunningUpstream(spec if spec is not None else UpstreamSpec(**fields))
        upstream.start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()
    for upstream in started:
        upstream.join()
