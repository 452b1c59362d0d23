"""``sentinel``: the command line of Stock Sentinel."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.logging import RichHandler

from sentinel.settings import Settings, get_settings
from timescale.embedded import EmbeddedDatabaseError, EmbeddedPostgres
from timescale.migrate import migrate

console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


class CommandError(RuntimeError):
    """A failure to report in one line, without a traceback."""


def embedded(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.home_dir, settings.pg_bin, settings.db_os_user)


def database_url(settings: Settings, *, start: bool = False) -> str:
    """The DSN everything uses: ``DATABASE_URL`` if set, else the embedded database."""
    if settings.database_url:
        return settings.database_url
    db = embedded(settings)
    if start:
        db.start()
    return db.dsn()


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
        db = embedded(settings)
        was_running = db.status().running
        st = db.start()
        verb = "already running" if was_running else "started"
        console.print(f"embedded TimescaleDB {verb}: pid {st.pid}, data in {st.data_dir}")
        out.print(st.dsn)
    elif action == "stop":
        stopped = embedded(settings).stop()
        console.print("stopped" if stopped else "not running")
    elif action == "status":
        return _db_status(settings)
    elif action == "url":
        out.print(database_url(settings))
    elif action == "migrate":
        run_migrations(settings, database_url(settings, start=True))
    return 0


def _db_status(settings: Settings) -> int:
    if settings.database_url:
        console.print("using DATABASE_URL (external database)")
        return 0
    st = embedded(settings).status()
    if st.running:
        console.print(f"running: pid {st.pid}, port {st.port}, socket dir {st.socket_dir}")
        out.print(st.dsn)
        return 0
    console.print(f"not running (data dir {st.data_dir})")
    return 3


# -- sentinel up --------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    dsn = database_url(settings, start=True)
    where = "external database (DATABASE_URL)" if settings.database_url else "embedded TimescaleDB"
    console.print(f"[bold]database[/]: {where}")
    run_migrations(settings, dsn)
    out.print(f"database  {dsn}")
    return 0


# -- wiring -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sentinel", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole stack on this machine")
    up.set_defaults(func=cmd_up)

    db = sub.add_parser("db", help="the embedded TimescaleDB")
    db.add_argument("action", choices=["start", "stop", "status", "url", "migrate"])
    db.set_defaults(func=cmd_db)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    level = logging.DEBUG if args.verbose else getattr(logging, settings.log_level.upper(), 20)
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)]
    )
    func: Callable[[argparse.Namespace, Settings], int] = args.func
    try:
        return func(args, settings)
    except (CommandError, EmbeddedDatabaseError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
