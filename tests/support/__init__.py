"""Test support: real upstream MCP servers, fixtures and polling helpers.

Fixtures live in ``tests.support.fixtures``; enable them with
``pytest_plugins = ["tests.support.fixtures"]`` in the root ``conftest.py``.
"""

from tests.support.asgi_server import ThreadedASGIServer, serve_asgi
from tests.support.process import UpstreamProcess, start_upstream_process
from tests.support.upstreams import (
    DEFAULT_TOOLS,
    RunningUpstream,
    SeenRequest,
    UpstreamSpec,
    run_upstream,
)
from tests.support.waiting import wait_until

__all__ = [
    "DEFAULT_TOOLS",
    "RunningUpstream",
    "SeenRequest",
    "ThreadedASGIServer",
    "UpstreamProcess",
    "UpstreamSpec",
    "run_upstream",
    "serve_asgi",
    "start_upstream_process",
    "wait_until",
]
