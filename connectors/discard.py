"""A sink that keeps nothing, for outputs a run does not want stored."""

from __future__ import annotations

from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from typing_extensions import override


class _DiscardPartition(StatelessSinkPartition[Any]):
    @override
    def write_batch(self, items: list[Any]) -> None:
        pass


class DiscardSink(DynamicSink[Any]):
    """Drops every item (e.g. `sentinel replay --no-ticks` leaves raw ticks unstored)."""

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DiscardPartition:
        return _DiscardPartition()
