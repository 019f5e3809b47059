"""Work the gateway starts off the response path (database writes, upstream session ends).

Tasks are kept referenced until done (asyncio holds only weak references), an unexpected
failure is logged once, and shutdown waits a bounded time before cancelling what is left: a
database that is gone must not hold the process for its server-selection timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger("registry.gateway")

DRAIN_TIMEOUT_SECONDS = 5.0


class BackgroundTasks:
    def __init__(self, *, kind: str) -> None:
        self._kind = kind
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def drain(self, *, grace_seconds: float = DRAIN_TIMEOUT_SECONDS) -> None:
        """Wait up to ``grace_seconds`` for pending work, then cancel what is left."""
        pending = set(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=grace_seconds)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # A task boundary: nobody awaits this task, so log once here.
            log.warning("gateway_background_task_failed", kind=self._kind, error=type(exc).__name__)
