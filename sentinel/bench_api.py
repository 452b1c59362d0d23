"""``sentinel bench``'s API section: every read endpoint under load, on the short database
the pipeline run filled and on a long-history one built here, side by side.

The product promises that API latency does not grow with the history the database
holds. The long database is a history like the one that broke that promise (20 years
of daily NASDAQ closes with their ticks kept, and 1-second bars of 5 symbols), built
through the product's own replay (:func:`sentinel.flows.replay_flow`, as ``sentinel
replay`` runs it), so every table is written as in production. Its ``layout`` is how
the history is stored: ``daily-chunks`` (the default) puts ``ticks`` in one-day chunks,
the migrations' interval, whatever the replay would choose (5,031 chunks for the daily
series alone: the database the promise was broken on); ``replay`` makes the chunks
``sentinel replay`` makes for the same files. The output says what the database holds
(chunks per table and the largest), checked rather than assumed. Nothing is cached
between runs: both databases are scratch databases, dropped at the end, and each is
analyzed before its load.

Load goes to 127.0.0.1 only, 8 concurrent clients, a few seconds per endpoint, from
:mod:`api.loadtest`'s client in its own process; its ceiling against a trivial app is
measured in the same run, so a reader can tell the server's figures from the client's.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from bytewax.run import cli_main
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from api.loadtest import bench_api, client_ceiling
from connectors.simulator import TickGenerator
from connectors.timescale.scratch import scratch_database, table_counts
from connectors.timescale.tickers import seed_tickers
from dataflows.records import US
from sentinel.flows import SINK_TABLES, replay_flow
from sentinel.settings import Settings, default_api_workers, get_settings

Layout = Literal["daily-chunks", "replay"]
LAYOUTS: tuple[Layout, ...] = ("daily-chunks", "replay")
DAILY_SYMBOL = "NDAQ"
SECOND_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA")
SHORT_DAILY_DAYS = 60
LONG_DATABASE = "sentinel_bench_long"
TABLES = ("tickers", *sorted(set(SINK_TABLES.values())))


@dataclass(frozen=True)
class Target:
    """What an endpoint must do under 8 concurrent clients (no errors, always)."""

    p99_ms: float
    requests_per_s: float | None = None


# Display order; the load runs /health last (see :func:`_load_order`).
ENDPOINTS: dict[str, tuple[str, Target]] = {
    "/health": ("/health", Target(50)),
    "/forecasts/{daily}": (f"/forecasts/{DAILY_SYMBOL}", Target(20, 500)),
    "/forecasts/{1 s}": (f"/forecasts/{SECOND_SYMBOLS[0]}", Target(20, 500)),
    "/bars/{daily}?limit=100": (f"/bars/{DAILY_SYMBOL}?limit=100", Target(20)),
    "/models/{daily}": (f"/models/{DAILY_SYMBOL}", Target(20)),
    "/tickers": ("/tickers", Target(20)),
}


@dataclass(frozen=True)
class ApiOptions:
    """The API section's knobs: whether to build the long database, its layout, how
    much 1-second history (``second_span_s`` of trades per symbol) and how many days of
    the daily series (None: all of it, 1999-2018), and the load."""

    long_history: bool = True
    layout: Layout = "daily-chunks"
    second_span_s: int = 3600
    daily_days: int | None = None
    workers: int = field(default_factory=default_api_workers)
    duration_s: float = 3
    concurrency: int = 8

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.second_span_s < 1:
            raise ValueError("second_span_s must be at least 1")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")


# -- the histories -----------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryFile:
    """A replay file and what it will write: its rows and bars."""

    path: Path
    bar_seconds: int
    symbols: tuple[str, ...]
    rows: int
    bars: int
    what: str


def nasdaq_daily(days: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """arch's NASDAQ Composite daily prices (1999-2018; ``days``: only the last ones) and
    their XNYS sessions (``open``, ``close`` in UTC; every date of the series is one)."""
    import arch.data.nasdaq
    import exchange_calendars

    frame = arch.data.nasdaq.load()
    frame = frame.iloc[-days:] if days else frame
    first, last = frame.index[0], frame.index[-1] + pd.Timedelta(days=1)  # end > start
    calendar = exchange_calendars.get_calendar("XNYS", start=first, end=last)
    return frame, calendar.schedule.loc[frame.index]


def daily_file(directory: Path, days: int | None = None) -> HistoryFile:
    """The NASDAQ Composite's daily closes as one trade a session, a minute before its
    close (13:00 New York time on a half day: a trade after the close is in no bar), as
    symbol NDAQ; ``days``: only the last ones."""
    frame, sessions = nasdaq_daily(days)
    close = pd.DatetimeIndex(sessions["close"]) - pd.Timedelta(minutes=1)
    table = pa.table(
        {
            "time": pa.array(close.as_unit("us")),
            "symbol": pa.array([DAILY_SYMBOL] * len(frame)),
            "price": pa.array(frame["Close"].to_numpy(float)),
            "size": pa.array(frame["Volume"].to_numpy(float)),
        }
    )
    path = directory / "daily.parquet"
    pq.write_table(table, path)
    first, last = frame.index[0].date(), frame.index[-1].date()
    what = f"{DAILY_SYMBOL} daily {first}..{last} ({len(frame):,} days, ticks kept)"
    return HistoryFile(path, 86_400, (DAILY_SYMBOL,), len(frame), len(frame), what)


def second_file(
    directory: Path,
    span_s: int,
    start: pd.Timestamp,
    symbols: Sequence[str] = SECOND_SYMBOLS,
    trades_per_s: float = 2.0,
) -> HistoryFile:
    """``span_s`` seconds of simulated trades (about ``trades_per_s`` a symbol) from
    ``start``, for 1-second bars."""
    start_us = int(start.timestamp()) * US
    gen = TickGenerator(list(symbols), 5, start_us, rates=dict.fromkeys(symbols, trades_per_s))
    trades = gen.advance(start_us + span_s * US)
    times = pd.to_datetime([t.time_ms for t in trades], unit="ms", utc=True)
    table = pa.table(
        {
            "time": pa.array(times.as_unit("us")),
            "symbol": pa.array([t.symbol for t in trades]),
            "price": pa.array([t.price for t in trades], pa.float64()),
            "size": pa.array([float(t.volume) for t in trades], pa.float64()),
        }
    )
    path = directory / "second.parquet"
    pq.write_table(table, path)
    bars = len({(t.symbol, t.time_ms // 1000) for t in trades})
    span = f"{span_s / 3600:g} h" if span_s >= 3600 else f"{span_s} s"
    what = f"{len(symbols)} symbols x {span} of trades from {start:%Y-%m-%d %H:%M} UTC (1 s bars)"
    return HistoryFile(path, 1, tuple(symbols), len(trades), bars, what)


def last_session_open() -> pd.Timestamp:
    """The opening of the daily series' last session: the 1-second history follows the
    daily one."""
    _, sessions = nasdaq_daily(1)
    return pd.Timestamp(sessions["open"].iloc[-1])


def replay(
    dsn: str, history: HistoryFile, progress: Progress, settings: Settings | None = None
) -> float:
    """``history`` through the product's replay flow (ticks kept), with its rows read and
    its ticks and bars committed on ``progress``; returns the seconds it took."""
    name = history.path.name
    read = progress.add_task(f"{name}: rows read", total=history.rows)
    totals = {"ticks": history.rows, "bars": history.bars}
    tasks = {t: progress.add_task(f"{name}: {t} committed", total=n) for t, n in totals.items()}

    def on_progress(done: int, total: int | None) -> None:
        progress.update(read, completed=done, total=total)

    def on_committed(counts: dict[str, int]) -> None:
        for table, task in tasks.items():
            progress.update(task, completed=counts.get(table, 0))

    flow = replay_flow(
        settings or get_settings(),
        dsn,
        history.path,
        bar_seconds=history.bar_seconds,
        on_progress=on_progress,
    )
    started = time.perf_counter()
    with _committed_rows(dsn, on_committed):
        cli_main(flow)
    return time.perf_counter() - started


@contextlib.contextmanager
def _committed_rows(
    dsn: str, report: Callable[[dict[str, int]], None], every_s: float = 0.5
) -> Iterator[None]:
    """Report the rows the replay's sinks have committed per table (``sink_status``, which
    they keep at most 2 s behind, and complete when the replay returns), every
    ``every_s`` and once at the end. The sinks write in the background: the rows the
    source has read say little about how far a replay is (one-day ticks chunks make
    the ticks the last to be done)."""
    query = """SELECT table_name, sum(rows_written + rows_skipped)::bigint
               FROM sink_status GROUP BY table_name"""
    stop = threading.Event()

    def count(conn: psycopg.Connection[Any]) -> None:
        report({table: int(n) for table, n in conn.execute(query).fetchall()})

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM sink_status")  # the previous replay's counters

    def poll() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.wait(every_s):
                count(conn)
            count(conn)

    thread = threading.Thread(target=poll, name="bench-committed-rows", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def set_layout(dsn: str, history: HistoryFile, layout: Layout, settings: Settings) -> None:
    """Before ``history`` is replayed. ``daily-chunks``: ``ticks`` in one-day chunks (the
    interval only sizes chunks still to be created), and no presizing. ``replay``: the
    chunks ``sentinel replay`` would make for this file before it streams it."""
    if layout == "daily-chunks":
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT set_chunk_time_interval('ticks', INTERVAL '1 day')")
        return
    # The replay's presizing is new: while a product has none, its layout is the
    # migrations' intervals, which the chunk counts in the output show.
    from sentinel.commands import replay as command

    presize = getattr(command, "presize_chunks_for", None)
    if presize is not None:
        args = argparse.Namespace(file=history.path, symbol=[], no_ticks=False)
        presize(args, settings, dsn, history.bar_seconds, None)


def ticks_in_daily_chunks(dsn: str) -> bool:
    """Whether every ``ticks`` chunk spans at most a day (whatever the interval says now:
    a presizing sets it back after making big chunks)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            """SELECT coalesce(bool_and(range_end - range_start <= INTERVAL '1 day'), false)
               FROM timescaledb_information.chunks WHERE hypertable_name = 'ticks'"""
        ).fetchone()
    return bool(row and row[0])


def storage(dsn: str) -> dict[str, Any]:
    """Rows and chunks per table, and each hypertable's chunk interval."""
    return {"rows": table_counts(dsn, TABLES), **chunk_layout(dsn)}


def chunk_layout(dsn: str) -> dict[str, dict[str, Any]]:
    """Each hypertable's chunks, its largest chunk's time range and its chunk interval
    (which only sizes the chunks still to be made)."""
    with psycopg.connect(dsn) as conn:
        chunks = conn.execute(
            """SELECT h.hypertable_name, count(c.chunk_name),
                      max(c.range_end - c.range_start)::text, d.time_interval::text
               FROM timescaledb_information.hypertables h
               JOIN timescaledb_information.dimensions d USING (hypertable_name)
               LEFT JOIN timescaledb_information.chunks c USING (hypertable_name)
               GROUP BY h.hypertable_name, d.time_interval"""
        ).fetchall()
    return {
        "chunks": {name: int(n) for name, n, _, _ in chunks},
        "largest_chunk": {name: largest for name, _, largest, _ in chunks},
        "chunk_interval": {name: interval for name, _, _, interval in chunks},
    }


def build_long_history(
    dsn: str, options: ApiOptions, progress: Progress, settings: Settings | None = None
) -> dict[str, Any]:
    """Fill ``dsn`` (a freshly migrated database) with the long history: tickers, the
    layout, the daily series, then the 1-second one. Returns what it holds, its chunks,
    and what building it took."""
    started = time.perf_counter()
    settings = settings or get_settings()
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-long-") as tmp:
        daily = daily_file(Path(tmp), options.daily_days)
        second = second_file(Path(tmp), options.second_span_s, last_session_open())
        seed_tickers(dsn, [*daily.symbols, *second.symbols])
        for history in (daily, second):
            set_layout(dsn, history, options.layout, settings)
            seconds[history.path.name] = replay(dsn, history, progress, settings)
    return {
        "contents": [daily.what, second.what],
        "layout": options.layout,
        # What the database holds, checked (not what was asked for).
        "ticks_in_daily_chunks": ticks_in_daily_chunks(dsn),
        "build_s": round(time.perf_counter() - started, 1),
        "replay_s": {name: round(s, 1) for name, s in seconds.items()},
        **chunk_layout(dsn),
    }


def fill_short_extras(
    dsn: str, symbols: Sequence[str], progress: Progress, settings: Settings | None = None
) -> dict[str, Any]:
    """The pipeline run's database (``symbols`` in 1-second bars) gets what the
    endpoints ask for: its symbols and NDAQ as tickers, and NDAQ's last 60 days
    replayed, so that each endpoint reads the same kind of rows on both databases."""
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-short-") as tmp:
        daily = daily_file(Path(tmp), SHORT_DAILY_DAYS)
        seed_tickers(dsn, [*symbols, DAILY_SYMBOL])
        replay(dsn, daily, progress, settings)
    return {"contents": [f"the pipeline run's {len(symbols)} symbols (1 s bars)", daily.what]}


# -- the load ------------------------------------------------------------------------------


def _load_order() -> dict[str, str]:
    """/health last: its timed-out requests would go on in the server, slowing what
    follows."""
    names = sorted(ENDPOINTS, key=lambda name: name == "/health")
    return {name: ENDPOINTS[name][0] for name in names}


def judge(name: str, report: dict[str, Any]) -> dict[str, Any]:
    """``report`` with its endpoint's target and whether each figure meets it."""
    target = ENDPOINTS[name][1]
    p99 = report.get("p99_ms")
    meets = {
        "p99": p99 is not None and p99 < target.p99_ms,
        "errors": report["errors"] == 0,
        "requests_per_s": None
        if target.requests_per_s is None
        else report["requests_per_s"] >= target.requests_per_s,
    }
    goal = {"p99_ms_below": target.p99_ms, "requests_per_s_at_least": target.requests_per_s}
    met = all(v for v in meets.values() if v is not None)
    return {**report, "target": goal, "meets": meets, "meets_target": met}


def analyze(dsn: str) -> float:
    """``ANALYZE`` the whole database, as autovacuum would have by the time a database
    serves: the load then measures the queries, not plans made without statistics, nor
    an autoanalyze of the rows just written running beside it. Returns its seconds."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return round(time.perf_counter() - started, 1)


def load(dsn: str, options: ApiOptions) -> dict[str, dict[str, Any]]:
    """Every endpoint of :data:`ENDPOINTS` under load on the API serving ``dsn``, judged,
    in display order."""
    reports = bench_api(
        {"DATABASE_URL": dsn},
        _load_order(),
        workers=options.workers,
        duration_s=options.duration_s,
        concurrency=options.concurrency,
    )
    return {name: judge(name, reports[name]) for name in ENDPOINTS}


def progress_display(console: Console | None) -> Progress:
    """The build's progress on ``console`` (None: nothing shown)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    )


def api_bench(
    short_dsn: str,
    short_symbols: Sequence[str],
    admin_dsn: str,
    options: ApiOptions,
    echo: Callable[[str], None],
    console: Console | None,
) -> dict[str, Any]:
    """The whole section: the client's ceiling, the short database (``short_dsn``,
    filled by the pipeline run with ``short_symbols``) and, unless ``options`` say not,
    the long one, built in a scratch database beside ``admin_dsn``'s and dropped
    afterwards."""
    echo(f"api: the load client's ceiling, {options.concurrency} clients, a trivial app")
    out: dict[str, Any] = {
        "client": {"kind": "api.loadtest (httptools on uvloop, own process)", **client_ceiling()},
        "workers": options.workers,
        "concurrency": options.concurrency,
        "duration_s_per_endpoint": options.duration_s,
    }
    with progress_display(console) as progress:
        short = fill_short_extras(short_dsn, short_symbols, progress)
    out["short"], out["short_database"] = _measured(short_dsn, short, options, echo, "short")
    if options.long_history:
        with scratch_database(admin_dsn, LONG_DATABASE) as long_dsn:
            echo(f"api: building the long-history database (layout {options.layout})")
            with progress_display(console) as progress:
                built = build_long_history(long_dsn, options, progress)
            out["long"], out["long_database"] = _measured(
                long_dsn, built, options, echo, "long-history"
            )
    return out


def _measured(
    dsn: str, held: dict[str, Any], options: ApiOptions, echo: Callable[[str], None], what: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The endpoints' figures on ``dsn``, analyzed first, and what it holds (``held``
    and :func:`storage`)."""
    analyze_s = analyze(dsn)
    echo(f"api: {len(ENDPOINTS)} endpoints on the {what} database, 127.0.0.1")
    figures = load(dsn, options)
    return figures, {**held, **storage(dsn), "analyze_s": analyze_s}


# -- the table -----------------------------------------------------------------------------


def _mark(text: str, ok: bool | None) -> str:
    if ok is None:
        return text
    return f"[green]{text} ✓[/]" if ok else f"[red]{text} ✗[/]"


def _cells(report: dict[str, Any] | None) -> list[str]:
    if report is None:
        return ["-"] * 5
    meets = report["meets"]

    def ms(key: str) -> str:
        v = report.get(key)
        return f"{v:,.1f}" if v is not None else "-"

    return [
        _mark(f"{report['requests_per_s']:,.0f}", meets["requests_per_s"]),
        ms("p50_ms"),
        _mark(ms("p99_ms"), meets["p99"]),
        ms("max_ms"),
        _mark(str(report["errors"]), meets["errors"]),
    ]


def _target_text(name: str) -> str:
    target = ENDPOINTS[name][1]
    rate = f", >= {target.requests_per_s:g}/s" if target.requests_per_s else ""
    return f"p99 < {target.p99_ms:g} ms{rate}"


def api_table(api: dict[str, Any]) -> Table:
    """Each endpoint's figures on the short and the long database, side by side, each
    marked against its target."""
    client = api["client"]
    out = Table(
        title=f"api: {api['concurrency']} clients on 127.0.0.1, "
        f"{api['duration_s_per_endpoint']:g} s an endpoint, API {api['workers']} worker(s)"
    )
    out.add_column("endpoint")
    out.add_column("target")
    for side in ("short", "long"):
        for column in ("req/s", "p50 ms", "p99 ms", "max ms", "err"):
            out.add_column(f"{side} {column}", justify="right")
    for name in ENDPOINTS:
        long = api.get("long", {}).get(name)
        out.add_row(name, _target_text(name), *_cells(api["short"][name]), *_cells(long))
    caption = [
        f"load client's ceiling: {client['requests_per_s']:,.0f} req/s against a trivial "
        f"app (p99 {client['p99_ms']:.1f} ms): figures well below it are the server's"
    ]
    if "long_database" in api:
        db = api["long_database"]
        ticks = db["chunks"].get("ticks", 0)
        caption.append(
            f"long: {'; '.join(db['contents'])}; layout {db['layout']} "
            f"(ticks: {ticks:,} chunks, the largest {db['largest_chunk'].get('ticks')}), "
            f"built in {db['build_s']:g} s"
        )
    caption.append(f"short: {'; '.join(api['short_database']['contents'])}")
    out.caption = "\n".join(caption)
    return out


def storage_table(api: dict[str, Any]) -> Table:
    """Rows and chunks per table of both databases."""
    out = Table(title="api: what the databases hold")
    out.add_column("table")
    for column in ("short rows", "short chunks", "long rows", "long chunks"):
        out.add_column(column, justify="right")
    sides = [api["short_database"], api.get("long_database")]
    for name in TABLES:
        cells = []
        for db in sides:
            if db is None:
                cells += ["-", "-"]
                continue
            chunks = db["chunks"].get(name)
            cells += [f"{db['rows'][name]:,}", f"{chunks:,}" if chunks is not None else "-"]
        out.add_row(name, *cells)
    return out
