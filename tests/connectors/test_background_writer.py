"""The background writer on its own: order, coalescing while the writer is busy, errors."""

from __future__ import annotations

import threading

import pytest

from connectors.timescale.writer import BackgroundWriter, BackgroundWriterError


class HeldWrites:
    """Records each ``write`` call; the first one waits until ``release``."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.first_started = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[str]) -> None:
        if not self.calls:
            self.first_started.set()
            assert self.release.wait(60), "the test never released the writer"
        self.calls.append(items)


def test_items_queued_while_the_writer_is_busy_are_written_together_in_order() -> None:
    writes = HeldWrites()
    writer = BackgroundWriter(writes, max_pending_rows=1_000, name="test-writer")
    writer.put("a", 1)
    assert writes.first_started.wait(30)
    for item in ("b", "c", "d"):
        writer.put(item, 1)
    assert writer.pending_rows == 4
    writes.release.set()
    writer.drain()
    assert writes.calls == [["a"], ["b", "c", "d"]]
    assert writer.pending_rows == 0
    writer.put("e", 1)
    writer.close()
    assert writes.calls[-1] == ["e"]


def test_a_failed_write_is_raised_by_every_later_call() -> None:
    def write(items: list[str]) -> None:
        raise ValueError(f"refused {items}")

    writer = BackgroundWriter(write, max_pending_rows=10, name="test-failing")
    writer.put("a", 1)
    with pytest.raises(BackgroundWriterError, match=r"refused \['a'\]"):
        writer.drain()
    with pytest.raises(BackgroundWriterError):
        writer.put("b", 1)
    with pytest.raises(BackgroundWriterError):
        writer.close()
