"""``sentinel``: the command line of Stock Sentinel."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler

from sentinel.settings import (
    Settings,
    database_url,
    embedded_database,
    get_settings,
    parse_interval,
)
from timescale.embedded import EmbeddedDatabaseError
from timescale.migrate import migrate

console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


class CommandError(RuntimeError):
    """A failure to report in one line, without a traceback."""


def run_migrations(settings: Settings, dsn: str) -> None:
    secret = settings.grafana_db_password
    report = migrate(
        dsn,
        grafana_password=secret.get_secret_value() if secret else None,
        echo=lambda line: console.print(f"[dim]migrate:[/] {line}"),
    )
    if not report.applied:
        console.print(f"[dim]migrate:[/] up to date (TimescaleDB license: {report.license})")


# -- sentinel db ...  --------------------------------------------------------------------


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    action = args.action
    if settings.database_url and action in {"start", "stop"}:
        console.print(f"DATABASE_URL is set, so there is no embedded database to {action}.")
        return 0
    if action == "start":
        db = embedded_database(settings)
        was_running = db.status().running
        st = db.start()
        verb = "already running" if was_running else "started"
        console.print(f"embedded TimescaleDB {verb}: pid {st.pid}, data in {st.data_dir}")
        out.print(st.dsn)
    elif action == "stop":
        stopped = embedded_database(settings).stop()
        console.print("stopped" if stopped else "not running")
    elif action == "status":
        return _db_status(settings)
    elif action == "url":
        out.print(database_url(settings))
    elif action == "migrate":
        run_migrations(settings, database_url(settings, start=True))
    elif action == "seed":
        from sentinel.pipeline import seed_tickers

        added = seed_tickers(database_url(settings, start=True), settings.symbol_list)
        console.print(f"tickers: added {added}" if added else "tickers: table not empty, unchanged")
    return 0


def _db_status(settings: Settings) -> int:
    if settings.database_url:
        console.print("using DATABASE_URL (external database)")
        return 0
    st = embedded_database(settings).status()
    if st.running:
        console.print(f"running: pid {st.pid}, port {st.port}, socket dir {st.socket_dir}")
        out.print(st.dsn)
        return 0
    console.print(f"not running (data dir {st.data_dir})")
    return 3


# -- sentinel up --------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from sentinel.pipeline import seed_tickers
    from sentinel.stack import Stack, row_counts, wait_for_port

    # A shell that starts us in the background makes SIGINT ignored, and Python then
    # installs no Ctrl-C handler: take both signals explicitly, before any child starts
    # (children then begin with the default dispositions, not an inherited "ignore").
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    dsn = database_url(settings, start=True)
    where = "external database (DATABASE_URL)" if settings.database_url else "embedded TimescaleDB"
    console.print(f"[bold]database[/]: {where}")
    run_migrations(settings, dsn)
    if seeded := seed_tickers(dsn, settings.symbol_list):
        console.print(f"tickers: added {seeded} ({', '.join(settings.symbol_list)})")

    stack = Stack(
        settings.home_dir / "logs", console, backoff_s=settings.restart_backoff_s,
        backoff_max_s=settings.restart_backoff_max_s,
    )  # fmt: skip
    bar = args.bar or settings.bar
    # Children read the same settings; what `up` decided is passed on explicitly.
    env = {"DATABASE_URL": dsn, "SENTINEL_BAR": bar, "SENTINEL_HOME": str(settings.home_dir)}
    feed_url = settings.feed_url
    sentinel = [sys.executable, "-m", "sentinel"]
    try:
        if settings.simulate and not settings.finnhub_token:
            port = settings.sim_port
            sim = stack.spawn("simulator", [*sentinel, "simulate", "--port", str(port)], env)
            wait_for_port("127.0.0.1", port, 30, sim)
            feed_url = f"ws://127.0.0.1:{port}"
        env["SENTINEL_FEED_URL"] = feed_url
        stack.spawn("feed", [*sentinel, "feed"], env)
        workers = str(args.workers or settings.workers)
        stack.spawn("dataflow", [*sentinel, "dataflow", "-w", workers], env)
        api_url = _start_api(stack, settings, env)
        _print_up(dsn, feed_url, bar, stack, api_url, settings)
        return _supervise(stack, dsn, args.duration, row_counts)
    finally:
        stack.stop_all()
        console.print("stopped the API, the feed and the dataflow; the database keeps running "
                      "(`sentinel db stop` stops it)")  # fmt: skip


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _ensure_recovery_dir(directory: Path) -> None:
    """Bytewax needs its recovery partitions created before the first run."""
    from bytewax.recovery import init_db_dir

    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.glob("part-*.sqlite3")):
        init_db_dir(directory, 1)


def _start_api(stack: Any, settings: Settings, env: dict[str, str]) -> str:
    from api.serve import uvicorn_command, wait_healthy

    host, port = settings.api_host, settings.api_port
    api = stack.spawn("api", uvicorn_command(host, port), env)
    url = f"http://{host}:{port}"
    wait_healthy(url, 60, api.proc)
    return url


def _print_up(
    dsn: str, feed_url: str, bar: str, stack: Any, api_url: str, settings: Settings
) -> None:
    recovery = settings.recovery_path(bar) if settings.recovery else "off"
    out.print("[bold green]Stock Sentinel is up[/]")
    out.print(f"  dashboard {api_url}/")
    out.print(f"  api       {api_url}  (docs: {api_url}/docs)")
    out.print(f"  database  {dsn}")
    out.print(f"  feed      {feed_url}")
    out.print(f"  journal   {settings.journal_file}")
    out.print(f"  dataflow  {bar} bars, recovery {recovery}")
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
    from connectors.journal import Journal, JournalBusyError
    from connectors.recorder import FeedRecorder
    from dataflows.records import wall_clock_us

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        dsn: str | None = database_url(settings)
    except EmbeddedDatabaseError as exc:
        console.print(f"[yellow]not following the tickers table:[/] {exc}")
        dsn = None
    journal = Journal(settings.journal_file)
    try:
        journal.lock_for_writing()
    except JournalBusyError as exc:
        raise CommandError(str(exc)) from None
    token = settings.finnhub_token.get_secret_value() if settings.finnhub_token else None
    feed = FinnhubFeed(
        settings.feed_url, token, settings.symbol_list, dsn, poll_interval_s=2.0,
        backoff_initial_s=0.5, backoff_max_s=30.0, proxy=None, clock=wall_clock_us,
        last_seq=journal.last_stamp_us(),
    )  # fmt: skip
    recorder = FeedRecorder(journal, feed, retention_s=settings.journal_retention_h * 3600)
    console.print(f"feed {settings.feed_url} -> journal {settings.journal_file}")
    try:
        recorder.run(stop)
    finally:
        journal.close()
    console.print(f"feed stopped after journaling {recorder.written:,} messages")
    return 0


def cmd_dataflow(args: argparse.Namespace, settings: Settings) -> int:
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from dataflows.ticks import build_flow

    recovery = None
    if settings.recovery:
        directory = settings.recovery_path(settings.bar)
        _ensure_recovery_dir(directory)
        recovery = RecoveryConfig(directory, timedelta(seconds=settings.backup_interval_s))
        console.print(f"recovery: {directory}, a snapshot every {settings.snapshot_interval_s:g} s")
    cli_main(
        build_flow(), workers_per_process=args.workers or settings.workers,
        epoch_interval=timedelta(seconds=settings.snapshot_interval_s), recovery_config=recovery,
    )  # fmt: skip
    return 0


# -- sentinel simulate --------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from connectors import simulator_server

    token = settings.finnhub_token.get_secret_value() if settings.finnhub_token else None
    simulator_server.run(
        args.host, args.port, seed=args.seed if args.seed is not None else settings.sim_seed,
        rate=args.rate or settings.sim_rate, token=token, bad_rate=args.bad_rate,
    )  # fmt: skip
    return 0


# -- sentinel replay ----------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from bytewax.run import cli_main
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from connectors.replay import ReplaySource
    from dataflows.parse import ParseConfig
    from dataflows.ticks import build_flow
    from sentinel.pipeline import flow_config, timescale_sinks

    speed = None if args.speed == "max" else _positive(args.speed, "--speed")
    bar_seconds = parse_interval(args.bar)
    if not args.file.is_file():
        raise CommandError(f"{args.file}: no such file")
    dsn = database_url(settings, start=True)
    run_migrations(settings, dsn)
    config = flow_config(settings, live=False, bar_seconds=bar_seconds)
    # A file's own clock is its batches' median time; history may span decades.
    ten_years = 10 * 365.25 * 86_400
    config = replace(config, parse=ParseConfig(max_future_s=ten_years, max_past_s=ten_years))
    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        "rows", TimeRemainingColumn(), console=console,
    )  # fmt: skip
    task = progress.add_task(f"replay {args.file.name}", total=None)

    def on_progress(done: int, total: int | None) -> None:
        progress.update(task, completed=done, total=total)

    source = ReplaySource(
        args.file, speed=speed, symbols=[s.upper() for s in args.symbol] or None,
        on_progress=on_progress,
    )  # fmt: skip
    sinks = timescale_sinks(dsn, settings.sink_batch_rows)
    if args.no_ticks:
        from connectors.discard import DiscardSink

        sinks = replace(sinks, ticks=DiscardSink())
    flow = build_flow(source, sinks, config)
    recovery = None
    if args.recovery_dir:
        from bytewax.recovery import RecoveryConfig

        _ensure_recovery_dir(args.recovery_dir)
        recovery = RecoveryConfig(args.recovery_dir)
    with progress:
        cli_main(
            flow, workers_per_process=args.workers,
            epoch_interval=timedelta(seconds=args.snapshot_interval), recovery_config=recovery,
        )  # fmt: skip
    console.print(f"replay of {args.file} done ({bar_seconds} s bars)")
    return 0


# -- sentinel evaluate --------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from online_models.evaluate import format_table
    from sentinel.evaluate import evaluate

    with console.status("replaying the S&P 500 daily series through the dataflow..."):
        evaluation, flow_seconds = evaluate(burn_in=args.burn_in, garch_refit=args.garch_refit)
    out.print(format_table(evaluation))
    out.print(f"\ndataflow: {flow_seconds:.1f} s for the whole series (all models, all outputs)")
    return 0


# -- sentinel bench -----------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from sentinel.bench import run

    dsn = database_url(settings, start=True)
    result = run(dsn, ticks=args.ticks, echo=lambda m: console.print(f"[dim]bench:[/] {m}"),
                 api=not args.no_api)  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


# -- sentinel grafana ---------------------------------------------------------------------


def cmd_grafana(args: argparse.Namespace, settings: Settings) -> int:
    import os

    if args.action == "build":
        from grafana.build import build

        for path in build(args.out):
            out.print(str(path))
        return 0
    from grafana.sync import SyncError, sync

    if not args.url:
        raise CommandError("grafana sync needs the Grafana URL, e.g. http://localhost:3000")
    try:
        report = sync(
            args.url, token=args.token, user=args.user, password=args.password,
            env=os.environ, webhook_url=args.webhook_url, force=args.force,
        )  # fmt: skip
    except SyncError as exc:
        raise CommandError(str(exc)) from exc
    for line in report.lines():
        out.print(line)
    return 0


def _positive(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"{name} takes 'max' or a positive number, not {text!r}") from None
    if value <= 0:
        raise CommandError(f"{name} must be positive")
    return value


# -- wiring -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sentinel", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole stack on this machine")
    up.add_argument("--bar", help="bar length (default SENTINEL_BAR, 5s)")
    up.add_argument("-w", "--workers", type=int, help="Bytewax workers")
    up.add_argument("--duration", type=float, help="stop after this many seconds")
    up.set_defaults(func=cmd_up)

    feed = sub.add_parser("feed", help="the feed process: websocket -> the journal")
    feed.set_defaults(func=cmd_feed)

    flow = sub.add_parser("dataflow", help="the live dataflow: the journal -> TimescaleDB")
    flow.add_argument("-w", "--workers", type=int, help="Bytewax workers")
    flow.set_defaults(func=cmd_dataflow)

    sim = sub.add_parser("simulate", help="a Finnhub-protocol websocket feed of simulated trades")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--seed", type=int)
    sim.add_argument("--rate", type=float, help="trades/s per symbol")
    sim.add_argument("--bad-rate", type=float, default=0.0, help="share of malformed trades")
    sim.set_defaults(func=cmd_simulate)

    rep = sub.add_parser("replay", help="run the dataflow over a CSV or Parquet file")
    rep.add_argument("file", type=Path, help="columns time,symbol,price[,size]")
    rep.add_argument("--bar", required=True, help="bar length: 1s to 1d (e.g. 1m, 1d)")
    rep.add_argument("--speed", default="max", help="'max' (default) or X times real time")
    rep.add_argument("--symbol", action="append", default=[], help="only this symbol (repeat)")
    rep.add_argument("-w", "--workers", type=int, default=1)
    rep.add_argument("--no-ticks", action="store_true",
                     help="don't store raw ticks (for daily or other sparse series)")  # fmt: skip
    rep.add_argument("--recovery-dir", type=Path, help="Bytewax recovery: resume after a crash")
    rep.add_argument("--snapshot-interval", type=float, default=10.0, help="seconds")
    rep.set_defaults(func=cmd_replay)

    gf = sub.add_parser("grafana", help="dashboards and alert rules as code")
    gf.add_argument("action", choices=["build", "sync"])
    gf.add_argument("url", nargs="?", help="sync: the Grafana to push to")
    gf.add_argument("--out", type=Path, help="build: output directory")
    gf.add_argument("--token", help="sync: service account token")
    gf.add_argument("--user", help="sync: basic-auth user")
    gf.add_argument("--password", help="sync: basic-auth password")
    gf.add_argument("--webhook-url", default="http://api:8000/alerts/notifications",
                    help="sync: where Grafana posts alert notifications")  # fmt: skip
    gf.add_argument("--force", action="store_true", help="sync: write even what is unchanged")
    gf.set_defaults(func=cmd_grafana)

    bench = sub.add_parser("bench", help="throughput and memory, as JSON on stdout")
    bench.add_argument("--ticks", type=int, default=400_000, help="ticks through the pipeline")
    bench.add_argument("--no-api", action="store_true", help="skip the HTTP load test")
    bench.set_defaults(func=cmd_bench)

    ev = sub.add_parser("evaluate", help="score the online models on the S&P 500, vs GARCH")
    ev.add_argument("--burn-in", type=int, default=250, help="days before scoring starts")
    ev.add_argument("--garch-refit", type=int, default=20, help="days between GARCH refits")
    ev.set_defaults(func=cmd_evaluate)

    db = sub.add_parser("db", help="the embedded TimescaleDB")
    db.add_argument("action", choices=["start", "stop", "status", "url", "migrate", "seed"])
    db.set_defaults(func=cmd_db)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = "_".join(str(part) for part in err["loc"]).upper()
            var = name if name in {"DATABASE_URL", "FINNHUB_TOKEN"} else f"SENTINEL_{name}"
            console.print(f"[red]configuration error:[/] {var}: {err['msg']}")
        return 2
    level = logging.DEBUG if args.verbose else getattr(logging, settings.log_level.upper(), 20)
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)]
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll
    func: Callable[[argparse.Namespace, Settings], int] = args.func
    try:
        return func(args, settings)
    except (CommandError, EmbeddedDatabaseError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
