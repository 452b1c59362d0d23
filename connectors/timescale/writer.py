"""A background writer: one thread, a bounded queue, and a barrier.

:class:`BackgroundWriter` lets a sink partition hand its rows to a thread and return to
the dataflow at once, so that Bytewax computes the next batch while the database stores
this one. Three rules keep it at-least-once:

- ``put`` blocks while the queue holds ``max_pending_rows`` rows or more (back-pressure:
  a slow database holds the dataflow back, memory stays bounded); a single batch larger
  than the bound is still taken once the queue is empty, so nothing deadlocks;
- ``drain`` returns only once everything put before it is written (the thread's
  ``write`` returned), so a snapshot taken after it never covers rows that are not
  durable;
- the thread writes everything queued by the time it is free, in order, in one call:
  while the database keeps up each item is written alone, as soon as it comes; when it
  falls behind, the items waiting are written together, in fewer transactions;
- the first error of ``write`` is kept: the thread writes nothing more, and every later
  ``put``, ``drain`` and ``close`` raises it. It is never dropped silently; the rows it
  did not write are not covered by any snapshot, so a resumed dataflow replays them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BackgroundWriterError(RuntimeError):
    """The writer's thread failed earlier; ``__cause__`` is its error."""


class BackgroundWriter(Generic[T]):
    """Call ``write(items)`` on one thread with the items ``put(item, n_rows)`` queued
    since its last call, in order; each item is written once."""

    def __init__(
        self, write: Callable[[list[T]], None], *, max_pending_rows: int, name: str
    ) -> None:
        if max_pending_rows < 1:
            raise ValueError(f"max_pending_rows must be at least 1, got {max_pending_rows}")
        self._write = write
        self._max_rows = max_pending_rows
        self._cond = threading.Condition()
        self._queue: deque[tuple[T, int]] = deque()  # items stay until written
        self._pending_rows = 0
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending_rows(self) -> int:
        """Rows put and not written yet (the one being written included)."""
        with self._cond:
            return self._pending_rows

    def put(self, item: T, n_rows: int) -> None:
        """Queue ``item``; blocks while the queue is full; raises an earlier error."""
        with self._cond:
            if self._closing:
                raise RuntimeError("put on a closed BackgroundWriter")
            while (
                self._error is None and self._queue and self._pending_rows + n_rows > self._max_rows
            ):
                self._cond.wait()
            self._raise_error()
            self._queue.append((item, n_rows))
            self._pending_rows += n_rows
            self._cond.notify_all()

    def drain(self) -> None:
        """Wait until everything put so far is written; raises the writer's error."""
        with self._cond:
            while self._error is None and self._queue:
                self._cond.wait()
            self._raise_error()

    def close(self) -> None:
        """Write what is queued, stop the thread; raises the writer's error."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise BackgroundWriterError(
                f"{self._thread.name}: writing failed: {self._error}"
            ) from self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                items = [item for item, _ in self._queue]
            try:
                self._write(items)
            except BaseException as exc:  # kept, raised to the dataflow's thread
                with self._cond:
                    self._error = exc
                    self._queue.clear()
                    self._pending_rows = 0
                    self._cond.notify_all()
                return
            with self._cond:
                for _ in items:
                    _, n_rows = self._queue.popleft()
                    self._pending_rows -= n_rows
                self._cond.notify_all()
