"""Asyncio helpers shared by the websocket connectors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


async def run_together(*coros: Coroutine[Any, Any, Any]) -> None:
    """Run coroutines until one fails or all are cancelled, then cancel and await the rest.

    ``asyncio.gather`` returns as soon as one task is cancelled; waiting for every task
    lets a websocket finish its closing handshake before the loop closes.
    """
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def cancel_from_another_thread(
    loop: asyncio.AbstractEventLoop | None, task: asyncio.Task[Any] | None
) -> None:
    """Ask ``task`` to stop from outside its loop's thread; harmless if it already has."""
    if loop is not None and task is not None and not loop.is_closed():
        with contextlib.suppress(RuntimeError):  # the loop may have just closed
            loop.call_soon_threadsafe(task.cancel)
