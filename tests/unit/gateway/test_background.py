"""Background work of the gateway: bounded drain at shutdown, failures logged once."""

from __future__ import annotations

import asyncio
import time

from structlog.testing import capture_logs

from registry.gateway.background import BackgroundTasks


async def test_drain_waits_for_finished_work_and_cancels_the_rest() -> None:
    """The destructive-call audit drain had no bound: a database that was gone held
    shutdown for its whole server-selection timeout."""
    tasks = BackgroundTasks(kind="test")
    finished: list[str] = []
    cancelled: list[str] = []

    async def quick() -> None:
        await asyncio.sleep(0)
        finished.append("quick")

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("stuck")
            raise

    tasks.spawn(quick())
    tasks.spawn(stuck())
    started = time.monotonic()
    await tasks.drain(grace_seconds=0.05)

    assert finished == ["quick"]
    assert cancelled == ["stuck"]
    assert time.monotonic() - started < 1.0


async def test_failed_work_is_logged_once_without_the_message() -> None:
    tasks = BackgroundTasks(kind="audit")

    async def broken() -> None:
        raise RuntimeError("secret-bearing detail")

    with capture_logs() as logs:
        tasks.spawn(broken())
        await tasks.drain()

    assert logs == [
        {
            "event": "gateway_background_task_failed",
            "kind": "audit",
            "error": "RuntimeError",
            "log_level": "warning",
        }
    ]
