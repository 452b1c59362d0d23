"""`sentinel bench`'s pipeline figures: the three runs write the same rows, and every
figure is there, next to the raw COPY rate."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from sentinel.bench import SYMBOLS, machine, make_batches, pipeline, summary


@pytest.mark.slow
def test_one_worker_two_workers_and_a_cluster_write_the_same_rows(db: str) -> None:
    lines: list[str] = []
    result = pipeline(db, 4_000, lines.append)
    assert result["same_rows_in_every_run"] is True
    assert result["rows_written"]["ticks"] == result["ticks"] > 3_000
    assert result["rows_written"]["bars"] > 0
    for key in (
        "end_to_end_ticks_per_s",
        "end_to_end_2_workers_ticks_per_s",
        "end_to_end_2_processes_ticks_per_s",
        "raw_copy_rows_per_s",
    ):
        assert result[key] > 0, key
    raw = result["raw_copy_rows_per_s"]
    ratio = result["end_to_end_ticks_per_s"] / raw
    assert result["ratio_end_to_end_over_raw_copy"] == pytest.approx(ratio, abs=0.002)
    assert result["ratio_2_workers"] > 0
    assert result["ratio_2_processes"] > 0
    assert any("cluster of 2 processes" in line for line in lines)
    # The embedded server runs here: its CPU time is counted beside the dataflow's.
    assert result["cores_busy_1_worker"]["this_process"] > 0
    assert result["cores_busy_1_worker"]["database"] > 0
    assert result["cores_busy_2_processes"]["child_processes"] > 0

    whole = {**machine(), "pipeline": result, "models": {"steps_per_s": 1}, "peak_rss_mb": 1.0}
    console = Console(record=True, width=120)
    console.print(summary(whole))
    text = console.export_text()
    assert "2-process cluster" in text
    assert "raw binary COPY" in text


def test_machine_records_revision_cores_and_memory() -> None:
    info = machine()
    assert info["cores"] >= 1
    assert info["memory_mb"] > 0
    assert info["git_revision"] is None or len(info["git_revision"]) == 40


def test_batch_i_holds_only_trades_of_group_i_mod_n_to_the_end() -> None:
    """A source with n partitions gives partition p the batches p, p + n, ...: each
    symbol's trades must all be in one partition, in order, or some arrive late."""
    batches, n = make_batches(60_000, groups=3)  # groups of 3, 3 and 2 symbols
    assert any(not b.messages for b in batches), "a group ran out first: empty turns"
    seen = 0
    for i, batch in enumerate(batches):
        for _, text in batch.messages:
            assert isinstance(text, str)
            trades = json.loads(text)["data"]
            seen += len(trades)
            assert {SYMBOLS.index(t["s"]) % 3 for t in trades} == {i % 3}
    assert seen == n
