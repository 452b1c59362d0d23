"""``sentinel bench``: throughput and memory, measured in one run, as JSON.

Timings on a shared 2-core machine are noisy, so the figures that matter are ratios
taken in the same run: the pipeline's end-to-end ticks/s (Finnhub messages in, every
output written to TimescaleDB) over a raw binary COPY of the same ticks into the same
table. The same prepared ticks go through the dataflow three times, each into emptied
tables: one worker, two workers in one process, and a Bytewax cluster of two processes
on 127.0.0.1 (its time includes starting the processes; ``cluster_startup_s`` is what
that costs with no ticks at all). Every run must write the same rows. The API section
(:mod:`sentinel.bench_api`) loads each read endpoint on that database and on a
long-history one, side by side. Everything runs against scratch databases that are
dropped afterwards, and any HTTP load goes to 127.0.0.1 only. Tables go to stderr, the
JSON to stdout.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from bytewax.run import cli_main
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from rich.console import Console
from rich.table import Table

from connectors.simulator import TickGenerator, finnhub_trade_message
from connectors.timescale.scratch import copy_ticks_again, scratch_database, table_counts
from dataflows.bars import BarConfig
from dataflows.parse import ParseConfig
from dataflows.records import US, RawBatch
from dataflows.ticks import FlowConfig
from sentinel.bench_api import ApiOptions, api_bench, api_table, storage_table
from sentinel.flows import SINK_TABLES, bench_flow, write_prepared

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "GOOGL", "META", "SPY")
Echo = Callable[[str], None]
COUNTED = ("ticks", "bars", "bar_metrics", "forecasts", "model_scores")
ROOT = Path(__file__).resolve().parents[1]
_STDERR = Console(stderr=True)


def make_batches(n_ticks: int, seed: int = 1, groups: int = 1) -> tuple[list[RawBatch], int]:
    """Simulated trades as Finnhub messages (up to 1000 trades each), 20 messages a batch,
    generated before timing starts. With ``groups`` n, symbol ``k`` trades only in the
    batches of group ``k % n``, which take turns: batch ``i`` is of group ``i % n`` (as
    from n feed connections, one per group of symbols; :class:`ListSource` with n
    partitions gives each its own partition)."""
    start = 1_700_000_000 * US
    rate = 200.0  # trades/s per symbol: a busy session
    gen = TickGenerator(list(SYMBOLS), seed, start, rates=dict.fromkeys(SYMBOLS, rate))
    span_us = int(n_ticks / (rate * len(SYMBOLS)) * US)
    trades = gen.advance(start + span_us)
    group_of = {symbol: k % groups for k, symbol in enumerate(SYMBOLS)}
    by_group: list[list[RawBatch]] = []
    seq = itertools.count()
    for g in range(groups):
        mine = [t for t in trades if group_of[t.symbol] == g]
        messages = [
            (next(seq), finnhub_trade_message(mine[j : j + 1000]))
            for j in range(0, len(mine), 1000)
        ]
        by_group.append(
            [
                RawBatch(
                    "bench",
                    mine[min(len(mine) - 1, (k + 20) * 1000 - 1)].time_ms * 1000,
                    messages[k : k + 20],
                )
                for k in range(0, len(messages), 20)
            ]
        )
    # Batch i must be of group i % n, to the end: a group that runs out of batches
    # first takes its turns with empty ones. (Closing the gaps instead once put a
    # group's last batch in the other partition, ahead of the one before it: its
    # trades were late, and a cluster run lost 72 bars.)
    rounds = max(map(len, by_group))
    batches = [
        group[i] if i < len(group) else RawBatch("bench", group[-1].clock_us, [])
        for i in range(rounds)
        for group in by_group
    ]
    return batches, len(trades)


# 1-second bars of the bench's simulated trades.
CONFIG = FlowConfig(
    parse=ParseConfig(max_future_s=86_400, max_past_s=86_400),
    bars=BarConfig(bar_seconds=1, allowance_s=0.5),
    live=False,
)


def pipeline(dsn: str, n_ticks: int, echo: Echo) -> dict[str, Any]:
    # Two groups of symbols: with 2 workers each reads and parses its own (one reads
    # them in turn).
    batches, n = make_batches(n_ticks, groups=2)
    echo(f"pipeline: {n:,} ticks through the dataflow into TimescaleDB, 1 worker")
    cpu = _CpuMeter(dsn)
    e2e = _timed(lambda: cli_main(bench_flow(batches, dsn, CONFIG)))
    cores_1 = cpu.cores(e2e)
    counts = table_counts(dsn, COUNTED)
    echo(f"raw COPY: the same {counts['ticks']:,} ticks, binary COPY straight into `ticks`")
    copied, raw = copy_ticks_again(dsn)
    empty_outputs(dsn)
    echo("pipeline: the same ticks, 2 workers in one process")
    e2e_w2 = _timed(
        lambda: cli_main(bench_flow(batches, dsn, CONFIG, partitions=2), workers_per_process=2)
    )
    counts_w2 = table_counts(dsn, COUNTED)
    empty_outputs(dsn)
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as tmp:
        echo("pipeline: a Bytewax cluster of 2 processes on 127.0.0.1, no ticks (startup)")
        empty = write_prepared(Path(tmp) / "empty.pickle", [], dsn, CONFIG)
        startup = _timed(lambda: run_cluster(empty, 2))
        echo("pipeline: the same ticks, a Bytewax cluster of 2 processes on 127.0.0.1")
        prepared = write_prepared(Path(tmp) / "batches.pickle", batches, dsn, CONFIG, 2)
        cpu = _CpuMeter(dsn)
        e2e_p2 = _timed(lambda: run_cluster(prepared, 2))
        cores_p2 = cpu.cores(e2e_p2)
    counts_p2 = table_counts(dsn, COUNTED)
    raw_rate = copied / raw
    rates = {"1": n / e2e, "w2": n / e2e_w2, "p2": n / e2e_p2}
    return {
        "ticks": n,
        "bar_seconds": 1,
        "end_to_end_ticks_per_s": round(rates["1"]),
        "raw_copy_rows_per_s": round(raw_rate),
        "ratio_end_to_end_over_raw_copy": round(rates["1"] / raw_rate, 3),
        "end_to_end_2_workers_ticks_per_s": round(rates["w2"]),
        "ratio_2_workers": round(rates["w2"] / raw_rate, 3),
        "end_to_end_2_processes_ticks_per_s": round(rates["p2"]),
        "ratio_2_processes": round(rates["p2"] / raw_rate, 3),
        "cluster_startup_s": round(startup, 2),
        # An estimate: the cluster's time less what it takes with no ticks at all.
        "end_to_end_2_processes_less_startup_ticks_per_s": round(n / max(e2e_p2 - startup, 1e-3)),
        "rows_written": counts,
        "same_rows_in_every_run": counts == counts_w2 == counts_p2,
        # CPU time over wall time: how many of the machine's cores each run kept busy.
        "cores_busy_1_worker": cores_1,
        "cores_busy_2_processes": cores_p2,
    }


class _CpuMeter:
    """CPU seconds spent from now on by this process, its (waited-for) children and the
    database server, when it runs on this machine (its postmaster and every backend)."""

    def __init__(self, dsn: str) -> None:
        self._postmaster = _postmaster_pid(dsn)
        self._start = self._now()

    def _now(self) -> tuple[float, float, float | None]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        server = _server_cpu_s(self._postmaster) if self._postmaster else None
        return time.process_time(), children.ru_utime + children.ru_stime, server

    def cores(self, wall_s: float) -> dict[str, float | None]:
        """Each part's CPU seconds since the start, over ``wall_s``."""
        end = self._now()
        own, children, server = (
            None if a is None or b is None else round((b - a) / wall_s, 2)
            for a, b in zip(self._start, end, strict=True)
        )
        return {"this_process": own, "child_processes": children, "database": server}


def _postmaster_pid(dsn: str) -> int | None:
    """The database server's pid, if it runs here and we may read its data directory."""
    host = str(conninfo_to_dict(dsn).get("host") or "")
    if host not in ("", "localhost", "127.0.0.1") and not host.startswith("/"):
        return None
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        text = (Path(str(row[0])) / "postmaster.pid").read_text() if row else ""
        return int(text.split()[0])
    except (psycopg.Error, OSError, ValueError, IndexError):
        return None


def _server_cpu_s(postmaster: int) -> float | None:
    """The postmaster's CPU seconds, its reaped children's (backends that ended), and
    those of every live backend: /proc/PID/stat fields 14-17, in clock ticks."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    try:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            pid, ppid = int(entry.name), int(fields[1])
            if pid == postmaster:
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            elif ppid == postmaster:
                total += int(fields[11]) + int(fields[12])
    except OSError:
        return None
    return total / tick


def _timed(job: Callable[[], object]) -> float:
    started = time.perf_counter()
    job()
    return time.perf_counter() - started


def empty_outputs(dsn: str) -> None:
    """Every table the flow writes, emptied for the next run."""
    tables = sql.SQL(", ").join(sql.Identifier(t) for t in sorted(set(SINK_TABLES.values())))
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(tables))


def run_cluster(prepared: Path, processes: int, *, timeout_s: float = 600) -> None:
    """Run :func:`sentinel.flows.prepared_flow` over ``prepared`` as a Bytewax cluster of
    ``processes`` processes on free 127.0.0.1 ports, and wait for all of them."""
    from timescale.embedded import free_port

    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    flow = f"sentinel.flows:prepared_flow({str(prepared)!r})"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", flow, "-i", str(i), "-a", addresses],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(processes)
    ]
    failed = []
    try:
        for i, proc in enumerate(procs):
            _, err = proc.communicate(timeout=timeout_s)
            if proc.returncode:
                failed.append(f"process {i}: code {proc.returncode}: {err.decode()[-500:]}")
    finally:
        for proc in procs:  # a timeout or Ctrl-C: by pid, each one we started
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if failed:
        raise RuntimeError("the bench cluster failed: " + "; ".join(failed))


def models(n_bars: int = 3000) -> dict[str, Any]:
    """predict + learn steps/s of one symbol's whole model set."""
    import pickle

    from connectors.simulator import start_price
    from dataflows.metrics import MetricsState
    from dataflows.records import Bar
    from online_models import SymbolModels

    gen = TickGenerator(["AAPL"], 3, 0, rates={"AAPL": 5.0})
    bars, price = [], start_price("AAPL")
    for i in range(n_bars):
        trades = gen.advance((i + 1) * 60 * US) or []
        close = trades[-1].price if trades else price
        hi = max([t.price for t in trades] + [price])
        lo = min([t.price for t in trades] + [price])
        bars.append(Bar(i * 60 * US, "AAPL", price, hi, lo, close, 1.0, None, 1, 60))
        price = close
    metrics, symbol_models = MetricsState(), SymbolModels("AAPL")
    started = time.perf_counter()
    for bar in bars:
        symbol_models.step(bar, metrics.update(bar))
    elapsed = time.perf_counter() - started
    return {
        "bars": n_bars,
        "steps_per_s": round(n_bars / elapsed),
        "pickled_bytes_per_symbol": len(pickle.dumps(symbol_models)),
    }


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine() -> dict[str, Any]:
    """What the figures were measured on: the code's revision, cores, memory."""
    revision = None
    # Not a git checkout (an image, a wheel): no revision.
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "git_revision": revision,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_mb": round(memory / 2**20),
        "python": sys.version.split()[0],
    }


def fill(dsn: str, n_ticks: int) -> None:
    """The rows the pipeline's runs write, from one unmeasured run (``api_only``)."""
    batches, _ = make_batches(n_ticks, groups=2)
    cli_main(bench_flow(batches, dsn, CONFIG))


def run(
    dsn: str,
    *,
    ticks: int = 400_000,
    echo: Echo = print,
    api: bool = True,
    live: bool = True,
    soak: bool = False,
    api_only: bool = False,
    api_options: ApiOptions | None = None,
    table: Console | None = _STDERR,
) -> dict[str, Any]:
    """Every figure, measured in one run; a summary table is printed on ``table``
    (stderr by default; None: none; the API section's progress goes there too).
    ``live``: the live path through the websocket (:func:`sentinel.bench_live.live_latency`,
    50 symbols x 100 trades/s) for 2 minutes, or with ``soak`` for 10, memory after 1 and
    after 10 minutes included. ``api``: the API section (:mod:`sentinel.bench_api`, as
    ``api_options`` say); ``api_only``: that alone, on the rows of one unmeasured
    pipeline run."""
    if api_only and not api:
        raise ValueError("api_only needs the API section")
    host = conninfo_to_dict(dsn).get("host") or "local socket"
    result: dict[str, Any] = {"database_host": host, **machine()}
    with scratch_database(dsn) as bench:
        if api_only:
            echo(f"pipeline: {ticks:,} ticks into the short database for the API (unmeasured)")
            fill(bench, ticks)
        else:
            result["pipeline"] = pipeline(bench, ticks, echo)
            echo("models: stepping one symbol's model set")
            result["models"] = models()
        if api:
            options = api_options or ApiOptions()
            result["api"] = api_bench(bench, SYMBOLS, dsn, options, echo, table)
    result["peak_rss_mb"] = peak_rss_mb()
    if live and not api_only:
        from sentinel.bench_live import live_latency

        with scratch_database(dsn, "sentinel_bench_live") as live_db:
            result["live"] = live_latency(
                live_db,
                duration_s=SOAK_S if soak else LIVE_S,
                soak_s=SOAK_S if soak else None,
                echo=echo,
            )
    if table is not None:
        print_tables(table, result)
    return result


def print_tables(console: Console, result: dict[str, Any]) -> None:
    """Every table the figures in ``result`` make."""
    if "pipeline" in result:
        console.print(summary(result))
    if "api" in result:
        console.print(api_table(result["api"]))
        console.print(storage_table(result["api"]))
    if "live" in result:
        console.print(live_summary(result["live"]))


LIVE_S = 120.0
SOAK_S = 600.0


def live_summary(live: dict[str, Any]) -> Table:
    """The live figures: latencies (ms), lag growth and memory."""
    out = Table(
        title=f"live: {live['symbols']} symbols x {live['rate_per_symbol']:g} trades/s "
        f"({live['trades_per_s']:,.0f} received/s), {live['duration_s']:g} s measured"
    )
    out.add_column("figure")
    for column in ("p50", "p99", "max"):
        out.add_column(column, justify="right")
    for name, key in (
        ("bar row committed - bar end (ms)", "bar_latency_ms"),
        ("  the same, beyond the late allowance", "bar_latency_beyond_allowance_ms"),
        ("forecast committed - bar end (ms)", "forecast_latency_ms"),
        ("tick received - committed (ms)", "tick_latency_ms"),
    ):
        f = live[key]
        out.add_row(
            name, *(f"{f[q]:,.0f}" if f.get(q) is not None else "-" for q in ("p50", "p99", "max"))
        )
    rss, lag = live["rss_mb"], live["lag_growth_ms"]
    caption = [
        f"lag growth {lag['growth']:+.0f} ms (p50, first vs last {lag['segment_s']:g} s)",
        f"peak RSS {rss['peak']:.0f} MB ({rss['peak_per_symbol']:.1f} MB a symbol)",
    ]
    if rss.get("end_over_1_min") is not None:
        caption.append(
            f"RSS after 1 min {rss['after_1_min']:.0f} MB, after {rss['after_end_s']} s "
            f"{rss['at_end']:.0f} MB ({rss['end_over_1_min']:.3f}x)"
        )
    out.caption = "; ".join(caption)
    return out


def _ms(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "-"


def summary(result: dict[str, Any]) -> Table:
    """The throughput figures, each next to the physical limit (raw binary COPY)."""
    p = result["pipeline"]
    raw = p["raw_copy_rows_per_s"]
    out = Table(title=f"sentinel bench: {p['ticks']:,} ticks, {result['cores']} cores")
    out.add_column("figure")
    out.add_column("per s", justify="right")
    out.add_column("of raw COPY", justify="right")
    rows: Sequence[tuple[str, int]] = [
        ("end to end, 1 worker (ticks)", p["end_to_end_ticks_per_s"]),
        ("end to end, 2 workers (ticks)", p["end_to_end_2_workers_ticks_per_s"]),
        ("end to end, 2-process cluster (ticks)", p["end_to_end_2_processes_ticks_per_s"]),
        (
            "  the same, less the cluster's startup (estimate)",
            p["end_to_end_2_processes_less_startup_ticks_per_s"],
        ),
        ("raw binary COPY into ticks (rows)", raw),
    ]
    for name, rate in rows:
        out.add_row(name, f"{rate:,}", f"{rate / raw:.2f}")
    out.add_row("models: predict+learn steps", f"{result['models']['steps_per_s']:,}", "")
    for side in ("short", "long"):
        if side in result.get("api", {}):
            rps = result["api"][side]["/forecasts/{1 s}"]["requests_per_s"]
            out.add_row(f"api: /forecasts/{{symbol}} requests, {side} database", f"{rps:,.0f}", "")
    busy, busy_p2 = p.get("cores_busy_1_worker") or {}, p.get("cores_busy_2_processes") or {}
    out.caption = (
        f"same rows in every run: {p['same_rows_in_every_run']}; cluster startup "
        f"{p['cluster_startup_s']} s (included); cores busy, 1 worker: "
        f"{busy.get('this_process')} dataflow + {busy.get('database')} database, cluster: "
        f"{busy_p2.get('child_processes')} + {busy_p2.get('database')}; peak RSS "
        f"{result['peak_rss_mb']} MB; git {(result['git_revision'] or 'unknown')[:12]}"
    )
    return out
