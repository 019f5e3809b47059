"""Poll a condition with a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable

import anyio


async def wait_until(
    condition: Callable[[], object],
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - STYLE.md spells it wait_until(cond, timeout=5)
    interval: float = 0.01,
) -> None:
    """Return as soon as ``condition()`` is truthy; raise ``TimeoutError`` after ``timeout``.

    ``condition`` may be a coroutine function (e.g. one that reads MongoDB); it is awaited.
    """
    deadline = time.monotonic() + timeout
    while not await _evaluate(condition):
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await anyio.sleep(interval)


async def _evaluate(condition: Callable[[], object]) -> object:
    result = condition()
    if inspect.isawaitable(result):
        return await result
    return result
