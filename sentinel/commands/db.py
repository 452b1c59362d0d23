"""``sentinel db ...``: the embedded TimescaleDB."""

from __future__ import annotations

import argparse

from sentinel.commands.common import (
    console,
    out,
    run_migrations,
)
from sentinel.settings import (
    Settings,
    database_url,
    embedded_database,
)

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
        from connectors.timescale.tickers import seed_tickers

        dsn = database_url(settings, start=True)
        added = seed_tickers(dsn, settings.symbol_list, settings.calendar)
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
