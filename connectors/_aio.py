"""Asyncio helpers shared by the websocket connectors."""

from __future__ import annotations

import asyncio
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
