"""In-memory source and sink, for flows whose input is already in memory and whose
output is wanted back in memory (``sentinel evaluate``, ``sentinel bench``).

Bytewax ships ``TestingSource``/``TestingSink`` for tests; these are the production
equivalents, without the test hooks: a list of items in, lists of rows out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from typing_extensions import override

__all__ = ["ListSink", "ListSource"]

X = TypeVar("X")


class _ListPartition(StatefulSourcePartition[X, int], Generic[X]):
    def __init__(self, items: Sequence[X], start: int) -> None:
        self._items = items
        self._next = start

    @override
    def next_batch(self) -> list[X]:
        if self._next >= len(self._items):
            raise StopIteration
        item = self._items[self._next]
        self._next += 1
        return [item]

    @override
    def snapshot(self) -> int:
        return self._next


class ListSource(FixedPartitionedSource[X, int], Generic[X]):
    """``items`` in order, in one partition; or, with ``partitions`` n, item ``i`` in
    partition ``i % n`` (each read in order, the partitions side by side, on whichever
    workers Bytewax gives them). Resumable at an item (exactly-once)."""

    def __init__(self, items: Sequence[X], partitions: int = 1) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        self.items = items
        self.partitions = partitions

    @override
    def list_parts(self) -> list[str]:
        if self.partitions == 1:
            return ["list"]
        return [f"list-{i}" for i in range(self.partitions)]

    @override
    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _ListPartition[X]:
        if self.partitions == 1:
            return _ListPartition(self.items, resume_state or 0)
        index = int(for_part.removeprefix("list-"))
        return _ListPartition(self.items[index :: self.partitions], resume_state or 0)


class _ListSinkPartition(StatelessSinkPartition[Sequence[Any]]):
    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    @override
    def write_batch(self, items: list[Sequence[Any]]) -> None:
        for item in items:
            self._rows.extend(item)


class ListSink(DynamicSink[Sequence[Any]]):
    """Collects the rows of every item (each item a list of rows) into ``rows``."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ListSinkPartition:
        return _ListSinkPartition(self.rows)
