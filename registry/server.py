"""The HTTP server process of ``mcp-registry serve``: uvicorn, with our signal handling."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.server import HANDLED_SIGNALS


class RegistryServer(uvicorn.Server):
    """uvicorn's server, exiting with status 0 after a graceful stop on SIGINT or SIGTERM.

    uvicorn re-raises the signal once it has shut down, so the process then dies of it: a
    KeyboardInterrupt traceback for Ctrl-C, status -15 for SIGTERM. The shutdown was clean and
    the exit status says so. The handler also marks the application as shutting down at once,
    so an embedded database that stops in the meantime is not taken for a crash.
    """

    def __init__(self, config: uvicorn.Config, *, app: FastAPI) -> None:
        super().__init__(config)
        self.registry_app = app

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals can only be handled in the main thread (as in uvicorn's own version).
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.registry_app.state.shutting_down = True
        super().handle_exit(sig, frame)
