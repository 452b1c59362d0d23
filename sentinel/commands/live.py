"""``sentinel up``, ``sentinel feed``, ``sentinel dataflow``: the live pipeline's processes."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg

from sentinel.commands.common import (
    CommandError,
    console,
    ensure_recovery_dir,
    out,
    run_migrations,
)
from sentinel.settings import (
    Settings,
    database_url,
)
from timescale.embedded import EmbeddedDatabaseError

# -- sentinel up --------------------------------------------------------------------------


OVERRIDE_VAR = "SENTINEL_CALENDAR_OVERRIDE"


@dataclass(frozen=True)
class DemoHours:
    """What ``sentinel up`` makes of market hours: the line it prints, what it adds to
    every child's environment, and the calendar the simulator follows (None: 24/7)."""

    message: str
    env: dict[str, str] = field(default_factory=dict)
    sim_calendar: str | None = None


def demo_hours(
    now_us: int, calendar: str, *, sessions: bool, override: str = "", simulated: bool = True
) -> DemoHours:
    """Whether the stack follows ``calendar``'s hours at ``now_us``.

    By default the market's state is told and the simulated demo runs 24/7 anyway (every
    child gets ``SENTINEL_CALENDAR_OVERRIDE=24/7``), so that it stays lively at night and
    at weekends; with ``sessions`` the simulator follows ``calendar``. An ``override`` the
    user set wins: every symbol is on it, the simulator's too. A real feed (not
    ``simulated``) follows the market whatever happens.
    """
    from connectors.simulator import market_hours
    from dataflows.sessions import ALWAYS, normalize

    name = normalize(override or calendar)
    status = None if name == ALWAYS else market_hours(name).status(now_us)
    sim_calendar = None if name == ALWAYS else name
    if override:
        if status is None:
            return DemoHours(
                f"every symbol is on {ALWAYS} ({OVERRIDE_VAR}): trading around the clock"
            )
        return DemoHours(
            f"{status}; every symbol is on {name} ({OVERRIDE_VAR}) and trades at its hours",
            sim_calendar=sim_calendar,
        )
    if status is None:
        return DemoHours(f"the market calendar is {ALWAYS}: the symbols trade around the clock")
    if not simulated:
        return DemoHours(f"{status}; the feed is live: trades come at the market's hours")
    if sessions:
        return DemoHours(
            f"{status}; --sessions: the simulator follows its hours "
            "(and trades sparsely in extended hours, 04:00 to 20:00 local time)",
            sim_calendar=sim_calendar,
        )
    return DemoHours(
        f"{status}; the demo runs its symbols 24/7: --sessions to follow the market's hours",
        env={OVERRIDE_VAR: ALWAYS},
    )


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.timescale.status import row_counts
    from connectors.timescale.tickers import seed_tickers
    from dataflows.records import wall_clock_us
    from sentinel.stack import Stack, wait_for_port

    # A shell that starts us in the background makes SIGINT ignored, and Python then
    # installs no Ctrl-C handler: take both signals explicitly, before any child starts
    # (children then begin with the default dispositions, not an inherited "ignore").
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    dsn = database_url(settings, start=True)
    where = "external database (DATABASE_URL)" if settings.database_url else "embedded TimescaleDB"
    console.print(f"[bold]database[/]: {where}")
    run_migrations(settings, dsn)
    if seeded := seed_tickers(dsn, settings.symbol_list, settings.calendar):
        console.print(f"tickers: added {seeded} ({', '.join(settings.symbol_list)})")

    processes = getattr(args, "processes", None) or settings.processes
    if processes < 1:
        raise CommandError("--processes must be at least 1")
    stack = Stack(
        settings.home_dir / "logs",
        console,
        backoff_s=settings.restart_backoff_s,
        backoff_max_s=settings.restart_backoff_max_s,
    )
    bar = args.bar or settings.bar
    simulated = settings.simulate and not settings.finnhub_token
    hours = demo_hours(
        wall_clock_us(),
        settings.calendar,
        sessions=bool(getattr(args, "sessions", False)),
        override=settings.calendar_override,
        simulated=simulated,
    )
    out.print(hours.message, markup=False)
    # Children read the same settings; what `up` decided is passed on explicitly.
    env = {"DATABASE_URL": dsn, "SENTINEL_BAR": bar, "SENTINEL_HOME": str(settings.home_dir)}
    env.update(hours.env)
    feed_url = settings.feed_url
    sentinel = [sys.executable, "-m", "sentinel"]
    try:
        if simulated:
            port = settings.sim_port
            simulate = [*sentinel, "simulate", "--port", str(port)]
            if hours.sim_calendar is not None:
                simulate += ["--sessions", "--calendar", hours.sim_calendar]
            sim = stack.spawn("simulator", simulate, env)
            wait_for_port("127.0.0.1", port, 30, sim)
            feed_url = f"ws://127.0.0.1:{port}"
        env["SENTINEL_FEED_URL"] = feed_url
        stack.spawn("feed", [*sentinel, "feed"], env)
        if settings.recovery and processes > 1:  # before any process of the cluster looks
            ensure_recovery_dir(settings.recovery_path(bar))
        _spawn_dataflow(stack, sentinel, env, args.workers or settings.workers, processes)
        # End of day: each closed day's ticks to the Parquet archive, then retention.
        stack.spawn("archive", [*sentinel, "archive", "--watch"], env)
        api_url = _start_api(stack, settings, env)
        _print_up(dsn, feed_url, bar, stack, api_url, settings, processes)
        return _supervise(stack, dsn, args.duration, row_counts)
    finally:
        stack.stop_all()
        console.print(
            "stopped the API, the feed, the dataflow and the archiver; the database keeps running "
            "(`sentinel db stop` stops it)"
        )


def cluster_commands(
    sentinel: list[str], workers: int, processes: int, ports: list[int]
) -> list[list[str]]:
    """The ``sentinel dataflow`` command of each process of a cluster on 127.0.0.1."""
    base = [*sentinel, "dataflow", "-w", str(workers)]
    if processes == 1:
        return [base]
    addresses = ",".join(f"127.0.0.1:{port}" for port in ports)
    return [[*base, "-i", str(i), "-a", addresses] for i in range(processes)]


def _spawn_dataflow(
    stack: Any, sentinel: list[str], env: dict[str, str], workers: int, processes: int
) -> None:
    from timescale.embedded import free_port

    ports = [free_port() for _ in range(processes)] if processes > 1 else []
    commands = cluster_commands(sentinel, workers, processes, ports)
    if processes == 1:
        stack.spawn("dataflow", commands[0], env)
        return
    for i, cmd in enumerate(commands):
        # A Bytewax cluster only runs whole: one process down, all restart together.
        stack.spawn(f"dataflow-{i}", cmd, env, group="dataflow")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _start_api(stack: Any, settings: Settings, env: dict[str, str]) -> str:
    from api.serve import uvicorn_command, wait_healthy, workers_env

    host, port, workers = settings.api_host, settings.api_port, settings.api_workers
    metrics_dir = settings.home_dir / "run" / "api-metrics"
    env = {**env, **workers_env(workers, metrics_dir)}
    api = stack.spawn("api", uvicorn_command(host, port, workers), env)
    url = f"http://{host}:{port}"
    wait_healthy(url, 60, api.proc)
    return url


def _print_up(
    dsn: str,
    feed_url: str,
    bar: str,
    stack: Any,
    api_url: str,
    settings: Settings,
    processes: int = 1,
) -> None:
    recovery = settings.recovery_path(bar) if settings.recovery else "off"
    out.print("[bold green]Stock Sentinel is up[/]")
    out.print(f"  dashboard {api_url}/")
    out.print(f"  api       {api_url}  (docs: {api_url}/docs)")
    out.print(f"  database  {dsn}")
    out.print(f"  feed      {feed_url}")
    out.print(f"  journal   {settings.journal_file}")
    cluster = f", a cluster of {processes} processes" if processes > 1 else ""
    out.print(f"  dataflow  {bar} bars, recovery {recovery}{cluster}")
    out.print(f"  archive   {settings.archive_location} (every {settings.archive_every_s:g} s)")
    out.print(f"  logs      {stack.log_dir}")
    out.print("  stop      Ctrl-C")


def _supervise(stack: Any, dsn: str, duration: float | None, counts: Any) -> int:
    deadline = time.monotonic() + duration if duration else None
    next_status = time.monotonic() + 5
    while deadline is None or time.monotonic() < deadline:
        for event in stack.supervise():
            headline, _, tail = event.partition("\n")
            console.print(headline, style="yellow", markup=False, highlight=False)
            if tail:
                console.print(tail, style="dim", markup=False, highlight=False)
        if time.monotonic() >= next_status:
            next_status += 5
            with contextlib.suppress(psycopg.Error):
                c = counts(dsn)
                out.print("  rows: " + "  ".join(f"{k} {v:,}" for k, v in c.items()))
        time.sleep(0.2)
    return 0


# -- sentinel feed, sentinel dataflow: the live path's two processes ----------------------


def cmd_feed(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from connectors.finnhub import FinnhubFeed
    from connectors.finnhub_rest import Backfiller, FinnhubRest
    from connectors.journal import Journal, JournalBusyError
    from connectors.recorder import FeedRecorder
    from connectors.timescale.tickers import TickerFollower
    from dataflows.records import wall_clock_us

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    tickers = None
    try:
        tickers = TickerFollower(database_url(settings))
    except EmbeddedDatabaseError as exc:
        console.print(f"[yellow]not following the tickers table:[/] {exc}")
    journal = Journal(settings.journal_file)
    try:
        journal.lock_for_writing()
    except JournalBusyError as exc:
        raise CommandError(str(exc)) from None
    token = settings.finnhub_token.get_secret_value() if settings.finnhub_token else None
    backfiller = None
    if settings.backfill != "off":
        rest_url = _rest_url(settings)
        client = FinnhubRest(rest_url, token, requests_per_min=settings.backfill_requests_per_min)
        backfiller = Backfiller(client, settings.backfill, max_gap_s=settings.backfill_max_gap_s)
        console.print(f"gaps backfilled from {rest_url} ({settings.backfill})")
    feed = FinnhubFeed(
        settings.feed_url,
        token,
        settings.symbol_list,
        tickers,
        backoff_initial_s=0.5,
        backoff_max_s=30.0,
        proxy=None,
        clock=wall_clock_us,
        last_seq=journal.last_stamp_us(),
        silent_after_s=settings.feed_silent_after_s,
        backfiller=backfiller,
        resume_from=journal.recent_messages(5_000_000) if backfiller else (),
    )
    recorder = FeedRecorder(journal, feed, retention_s=settings.journal_retention_h * 3600)
    console.print(f"feed {settings.feed_url} -> journal {settings.journal_file}")
    try:
        recorder.run(stop)
    finally:
        journal.close()
    console.print(f"feed stopped after journaling {recorder.written:,} messages")
    return 0


def _rest_url(settings: Settings) -> str:
    """``SENTINEL_FINNHUB_REST_URL`` if set; else Finnhub's own for Finnhub's websocket,
    and the feed's own host for any other (the simulator serves the REST routes too)."""
    from urllib.parse import urlsplit

    from connectors.simulator_server import REST_PREFIX

    feed = urlsplit(settings.feed_url)
    if "finnhub_rest_url" in settings.model_fields_set or feed.hostname == "ws.finnhub.io":
        return settings.finnhub_rest_url
    scheme = "https" if feed.scheme == "wss" else "http"
    return f"{scheme}://{feed.netloc}{REST_PREFIX}"


def cmd_dataflow(args: argparse.Namespace, settings: Settings) -> int:
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from sentinel.flows import live_flow

    process_id, addresses = cluster_args(args)
    processes = getattr(args, "processes", None) or 1
    if processes > 1 and addresses is None:
        if settings.recovery:  # before any process of the cluster looks for it
            ensure_recovery_dir(settings.recovery_path(settings.bar))
        return _local_cluster(args.workers or settings.workers, processes)
    recovery = None
    if settings.recovery:
        directory = settings.recovery_path(settings.bar)
        if process_id:
            # The partitions are process 0's to create, in a directory the processes share
            # or in its own: Bytewax needs them once across the cluster, not once each.
            directory.mkdir(parents=True, exist_ok=True)
        else:
            ensure_recovery_dir(directory)
        recovery = RecoveryConfig(directory, timedelta(seconds=settings.backup_interval_s))
        console.print(f"recovery: {directory}, a snapshot every {settings.snapshot_interval_s:g} s")
    if addresses is not None:
        console.print(f"cluster: process {process_id} of {len(addresses)} ({', '.join(addresses)})")
    workers = args.workers or settings.workers
    cli_main(
        live_flow(settings, partitions=workers * len(addresses or [None])),
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=settings.snapshot_interval_s),
        recovery_config=recovery,
    )
    return 0


def cluster_args(args: argparse.Namespace) -> tuple[int | None, list[str] | None]:
    """``-i/-a`` as Bytewax takes them: both or neither, the index within the addresses
    (comma- or semicolon-separated ``host:port``, the same list and order everywhere)."""
    process_id: int | None = getattr(args, "process_id", None)
    text: str | None = getattr(args, "addresses", None)
    if process_id is None and text is None:
        return None, None
    if process_id is None or text is None:
        raise CommandError("a cluster needs both -i/--process-id and -a/--addresses")
    addresses = [a.strip() for a in text.replace(";", ",").split(",") if a.strip()]
    if not 0 <= process_id < len(addresses):
        raise CommandError(
            f"-i {process_id} is not an index into the {len(addresses)} addresses of -a"
        )
    return process_id, addresses


def _local_cluster(workers: int, processes: int) -> int:
    """``sentinel dataflow --processes N``: a cluster of N processes on 127.0.0.1 (one
    container's). A cluster only runs whole, so when one process exits the others are
    stopped and this exits with its code: whoever restarts us (Docker's restart policy,
    a supervisor) restarts the whole cluster, which resumes from its recovery state."""
    import subprocess

    from sentinel.stack import describe_exit, stop_processes
    from timescale.embedded import free_port

    signal.signal(signal.SIGTERM, _interrupt)
    ports = [free_port() for _ in range(processes)]
    commands = cluster_commands([sys.executable, "-m", "sentinel"], workers, processes, ports)
    procs = [subprocess.Popen(cmd) for cmd in commands]
    console.print(f"dataflow: a cluster of {processes} processes, pids {[p.pid for p in procs]}")
    try:
        while True:
            for i, proc in enumerate(procs):
                if (code := proc.poll()) is not None:
                    console.print(f"dataflow process {i} {describe_exit(code)}: stopping the rest")
                    return code if code > 0 else 1 if code < 0 else 0
            time.sleep(0.2)
    finally:
        stop_processes(procs, 10)
