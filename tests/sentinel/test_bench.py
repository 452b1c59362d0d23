"""`sentinel bench`'s pipeline figures: the three runs write the same rows, and every
figure is there, next to the raw COPY rate. Its API section: the long-history database
is what was asked for, every endpoint is loaded and judged against its target, short
and long side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rich.console import Console

from sentinel.bench import SYMBOLS, machine, make_batches, pipeline, summary
from sentinel.bench_api import (
    ENDPOINTS,
    LAYOUTS,
    SECOND_SYMBOLS,
    TABLES,
    ApiOptions,
    api_table,
    build_long_history,
    daily_file,
    judge,
    load,
    progress_display,
    set_layout,
    storage,
    storage_table,
)
from sentinel.cli import build_parser
from sentinel.settings import default_api_workers
from tests.api.conftest import settings


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


# -- the API section ----------------------------------------------------------------------


@pytest.mark.slow
def test_long_history_fills_every_table_in_one_day_ticks_chunks_and_every_endpoint_answers(
    db: str,
) -> None:
    """A small long history (10 days, 10 s of 1-second trades) through the real replay,
    then every endpoint under a moment's load on the API serving it."""
    # One API worker (the default is one a core): each costs its start-up, and several
    # are tested on their own (tests/api/test_workers.py).
    options = ApiOptions(daily_days=10, second_span_s=10, duration_s=0.2, workers=1)
    with progress_display(None) as progress:
        built = build_long_history(db, options, progress)
    rows, chunks = storage(db)["rows"], built["chunks"]
    assert rows["tickers"] == 1 + len(SECOND_SYMBOLS)
    seconds = rows["ticks"] - 10
    assert seconds > 10  # about 2 trades/s for each of 5 symbols
    assert rows["bars"] > 10
    assert rows["bar_metrics"] == rows["bars"]
    for table in ("forecasts", "model_scores", "model_checkpoints", "daily_summary"):
        assert rows[table] > 0, table
    # One chunk per day: the 10 sessions (the 1-second trades are on the last one).
    assert built["chunk_interval"]["ticks"] == "1 day"
    assert built["largest_chunk"]["ticks"] == "1 day"
    assert chunks["ticks"] == 10
    assert built["ticks_in_daily_chunks"] is True
    assert any("10 days" in line for line in built["contents"])

    figures = load(db, options)
    assert list(figures) == list(ENDPOINTS)
    for name, report in figures.items():
        assert report["errors"] == 0, (name, report["errors_by_kind"])
        assert report["requests"] > 0, name


def test_layout_daily_chunks_sets_one_day_ticks_chunks_and_replay_leaves_the_interval(
    db: str, tmp_path: Path
) -> None:
    def ticks_interval() -> str:
        with psycopg.connect(db) as conn:
            row = conn.execute(
                """SELECT time_interval::text FROM timescaledb_information.dimensions
                   WHERE hypertable_name = 'ticks'"""
            ).fetchone()
        assert row is not None
        return str(row[0])

    history = daily_file(tmp_path, 10)
    with psycopg.connect(db) as conn:
        conn.execute("SELECT set_chunk_time_interval('ticks', INTERVAL '7 days')")
    set_layout(db, history, "replay", settings())
    assert ticks_interval() == "7 days"
    set_layout(db, history, "daily-chunks", settings())
    assert ticks_interval() == "1 day"


def test_options_refuse_an_unknown_layout() -> None:
    with pytest.raises(ValueError, match="daily-chunks, replay"):
        ApiOptions(layout="weekly")  # type: ignore[arg-type]


def test_the_command_line_offers_the_api_sections_options() -> None:
    parse = build_parser().parse_args
    args = parse(["bench", "--api-only", "--no-long-history", "--api-layout", "replay"])
    assert (args.api_only, args.no_long_history, args.api_layout) == (True, True, "replay")
    defaults = parse(["bench"])
    assert defaults.api_layout == LAYOUTS[0] == ApiOptions().layout
    assert defaults.long_span == ApiOptions().second_span_s
    assert defaults.api_workers is None  # SENTINEL_API_WORKERS, as `sentinel up` serves it
    assert ApiOptions().workers == default_api_workers()
    for layout in LAYOUTS:
        assert parse(["bench", "--api-layout", layout]).api_layout == layout
    for contradiction in (["--api-only", "--no-api"], ["--api-layout", "weekly"]):
        with pytest.raises(SystemExit):
            parse(["bench", *contradiction])


def _report(rps: float, p99: float, errors: int = 0) -> dict[str, Any]:
    return {
        "requests_per_s": rps,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "max_ms": p99 * 2,
        "errors": errors,
        "errors_by_kind": {"503": errors} if errors else {},
    }


def test_judge_marks_each_figure_against_its_endpoints_target() -> None:
    fast = judge("/forecasts/{1 s}", _report(600, 19.9))
    assert fast["meets_target"] is True
    slow = judge("/forecasts/{daily}", _report(499, 19.9))
    assert slow["meets"] == {"p99": True, "errors": True, "requests_per_s": False}
    assert slow["meets_target"] is False
    # /health's bound is 50 ms, and no rate is asked of it.
    health = judge("/health", _report(10, 49))
    assert health["meets"]["requests_per_s"] is None
    assert health["meets_target"] is True
    assert judge("/tickers", _report(900, 5, errors=1))["meets_target"] is False


def test_the_api_tables_show_every_endpoint_on_both_databases_side_by_side() -> None:
    short = {name: judge(name, _report(700, 4)) for name in ENDPOINTS}
    long = {name: judge(name, _report(80, 150)) for name in ENDPOINTS}
    held = {"rows": dict.fromkeys(TABLES, 1), "chunks": {"ticks": 5032}}
    api = {
        "client": {"requests_per_s": 2600.0, "p99_ms": 5.0},
        "workers": 1,
        "concurrency": 8,
        "duration_s_per_endpoint": 3,
        "short": short,
        "long": long,
        "short_database": {**held, "contents": ["the pipeline's symbols"]},
        "long_database": {
            **held,
            "contents": ["NDAQ daily"],
            "layout": "daily-chunks",
            "ticks_in_daily_chunks": True,
            "largest_chunk": {"ticks": "1 day"},
            "build_s": 95.0,
        },
    }
    console = Console(record=True, width=250)
    console.print(api_table(api))
    console.print(storage_table(api))
    text = console.export_text()
    for name in ENDPOINTS:
        assert name in text
    assert "short req/s" in text
    assert "long req/s" in text
    assert "✓" in text
    assert "✗" in text
    assert "2,600 req/s" in text  # the client's ceiling, beside the figures
    assert "5,032 chunks, the largest 1 day" in text
    for table in TABLES:
        assert table in text
