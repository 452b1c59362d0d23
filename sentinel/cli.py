"""``sentinel``: the command line of Stock Sentinel (argument parsing; the commands' bodies
are in :mod:`sentinel.commands`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError
from rich.logging import RichHandler

from sentinel.commands.archive import cmd_archive, cmd_retention
from sentinel.commands.common import CommandError, console
from sentinel.commands.db import cmd_db
from sentinel.commands.live import cmd_dataflow, cmd_feed, cmd_up
from sentinel.commands.replay import cmd_replay
from sentinel.commands.tools import cmd_bench, cmd_evaluate, cmd_grafana, cmd_simulate
from sentinel.settings import (
    Settings,
    get_settings,
)
from timescale.embedded import EmbeddedDatabaseError

# -- wiring -------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text}")
    return value


def _horizons(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not whole numbers separated by commas: {text}") from None
    if 1 not in values or min(values) < 1 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"distinct horizons >= 1, including 1: {text}")
    return tuple(sorted(values))


def _conditions_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conditions",
        choices=("tape", "all"),
        help="trade conditions: 'tape' applies the consolidated tape's rules (odd lots move "
        "volume, not prices; ...), 'all' lets every print update every field "
        "(default SENTINEL_CONDITIONS, tape)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentinel", description="Stock Sentinel: real-time stock analytics on TimescaleDB."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole stack on this machine")
    up.add_argument("--bar", help="bar length (default SENTINEL_BAR, 5s)")
    up.add_argument("-w", "--workers", type=int, help="Bytewax workers (per process)")
    up.add_argument(
        "-p",
        "--processes",
        type=int,
        help="run the dataflow as a Bytewax cluster of N processes (default SENTINEL_PROCESSES, 1)",
    )
    up.add_argument("--duration", type=float, help="stop after this many seconds")
    up.add_argument(
        "--sessions",
        action="store_true",
        help="follow the market's hours (SENTINEL_CALENDAR); default: a 24/7 demo",
    )
    _conditions_option(up)
    up.set_defaults(func=cmd_up)

    feed = sub.add_parser("feed", help="the feed process: websocket -> the journal")
    feed.set_defaults(func=cmd_feed)

    flow = sub.add_parser("dataflow", help="the live dataflow: the journal -> TimescaleDB")
    flow.add_argument("-w", "--workers", type=int, help="Bytewax workers (per process)")
    flow.add_argument(
        "-i", "--process-id", type=int, help="cluster: this process's index into --addresses"
    )
    flow.add_argument(
        "-a",
        "--addresses",
        help="cluster: host:port of every process, comma-separated, the same on each",
    )
    flow.add_argument(
        "-p",
        "--processes",
        type=int,
        help="without -i/-a: a cluster of N processes on 127.0.0.1, run and stopped together",
    )
    _conditions_option(flow)
    flow.set_defaults(func=cmd_dataflow)

    sim = sub.add_parser("simulate", help="a Finnhub-protocol websocket feed of simulated trades")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--seed", type=int)
    sim.add_argument("--rate", type=float, help="trades/s per symbol")
    sim.add_argument("--bad-rate", type=float, default=0.0, help="share of malformed trades")
    sim.add_argument(
        "--sessions",
        action="store_true",
        help="trade at market hours: every symbol on SENTINEL_CALENDAR (default: 24/7)",
    )
    sim.add_argument("--calendar", help="with --sessions: the symbols' market calendar")
    sim.set_defaults(func=cmd_simulate)

    rep = sub.add_parser(
        "replay", help="run the dataflow over a CSV or Parquet file, or the tick archive"
    )
    rep.add_argument(
        "file",
        type=Path,
        help="columns time,symbol,price[,size]; or an archive directory (or part of it)",
    )
    rep.add_argument("--bar", required=True, help="bar length: 1s to 1d (e.g. 1m, 1d)")
    rep.add_argument("--speed", default="max", help="'max' (default) or X times real time")
    rep.add_argument("--symbol", action="append", default=[], help="only this symbol (repeat)")
    rep.add_argument("-w", "--workers", type=int, default=1)
    rep.add_argument(
        "--no-ticks",
        action="store_true",
        help="don't store raw ticks (for daily or other sparse series)",
    )
    rep.add_argument(
        "--chunk-interval",
        default="auto",
        help="chunks for the replayed history: 'auto' (sized from the file), 'off', or e.g. 365d",
    )
    rep.add_argument("--recovery-dir", type=Path, help="Bytewax recovery: resume after a crash")
    rep.add_argument("--snapshot-interval", type=float, default=10.0, help="seconds")
    _conditions_option(rep)
    rep.set_defaults(func=cmd_replay)

    gf = sub.add_parser("grafana", help="dashboards and alert rules as code")
    gf.add_argument("action", choices=["build", "sync"])
    gf.add_argument("url", nargs="?", help="sync: the Grafana to push to")
    gf.add_argument("--out", type=Path, help="build: output directory")
    gf.add_argument("--token", help="sync: service account token")
    gf.add_argument("--user", help="sync: basic-auth user")
    gf.add_argument("--password", help="sync: basic-auth password")
    gf.add_argument(
        "--webhook-url",
        default="http://api:8000/alerts/notifications",
        help="sync: where Grafana posts alert notifications",
    )
    gf.add_argument("--force", action="store_true", help="sync: write even what is unchanged")
    gf.set_defaults(func=cmd_grafana)

    bench = sub.add_parser("bench", help="throughput and memory, as JSON on stdout")
    bench.add_argument("--ticks", type=int, default=400_000, help="ticks through the pipeline")
    api_part = bench.add_mutually_exclusive_group()
    api_part.add_argument(
        "--no-api", action="store_true", help="skip the API section (both databases)"
    )
    api_part.add_argument(
        "--api-only", action="store_true", help="only the API section (no pipeline, no live)"
    )
    bench.add_argument(
        "--no-long-history",
        action="store_true",
        help="API section: skip building and loading the long-history database",
    )
    bench.add_argument(
        "--api-layout",
        choices=["daily-chunks", "replay"],
        default="daily-chunks",
        help="long history: ticks in one-day chunks (default), or as the replay sizes them",
    )
    bench.add_argument(
        "--long-span",
        type=int,
        default=3600,
        help="long history: seconds of trades of the 1-second symbols (default 3600)",
    )
    bench.add_argument(
        "--api-workers",
        type=int,
        help="API section: uvicorn worker processes (default SENTINEL_API_WORKERS)",
    )
    bench.add_argument(
        "--no-live", action="store_true", help="skip the live latency run (2 minutes)"
    )
    bench.add_argument(
        "--soak", action="store_true", help="run the live part 10 minutes: memory after 1 and 10"
    )
    bench.set_defaults(func=cmd_bench)

    ev = sub.add_parser(
        "evaluate", help="score the online models on the S&P 500, vs the GARCH family"
    )
    ev.add_argument(
        "--series",
        choices=("sp500", "nasdaq"),
        default="sp500",
        help="daily series shipped by arch: sp500 (designed on) or nasdaq (held out)",
    )
    ev.add_argument("--burn-in", type=_positive, default=250, help="days before scoring starts")
    ev.add_argument(
        "--garch-refit", type=_positive, default=20, help="days between GARCH-family refits"
    )
    ev.add_argument(
        "--horizons",
        type=_horizons,
        default=(1, 5, 22),
        help="bars ahead, comma-separated (default 1,5,22)",
    )
    ev.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the forecasts into a PNG")
    ev.set_defaults(func=cmd_evaluate)

    arc = sub.add_parser("archive", help="archive the ticks of past days to Parquet")
    arc.add_argument("--uri", help="directory or pyarrow URI (default SENTINEL_ARCHIVE_URI)")
    arc.add_argument("--watch", action="store_true", help="repeat, with retention, until Ctrl-C")
    arc.add_argument("--day", action="append", default=[], help="archive again: YYYY-MM-DD")
    arc.add_argument("--symbol", action="append", default=[], help="archive again: symbol")
    arc.set_defaults(func=cmd_archive)

    ret = sub.add_parser("retention", help="drop old ticks chunks once archived and verified")
    ret.add_argument("--days", type=float, help="default SENTINEL_TICKS_RETENTION_DAYS (90)")
    ret.add_argument("--dry-run", action="store_true", help="verify and report; drop nothing")
    ret.add_argument("--uri", help="the archive (default SENTINEL_ARCHIVE_URI)")
    ret.set_defaults(func=cmd_retention)

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
    if conditions := getattr(args, "conditions", None):
        # For this process and for every one it starts (`up`'s dataflow, a cluster's).
        os.environ["SENTINEL_CONDITIONS"] = conditions
        settings = settings.model_copy(update={"conditions": conditions})
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
