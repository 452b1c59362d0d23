"""``sentinel archive`` and ``sentinel retention``: the end-of-day Parquet archive of raw
ticks (:mod:`connectors.archive`), and dropping ``ticks`` chunks once archived and verified.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import logging
import time
from typing import TYPE_CHECKING

from rich.table import Table

from sentinel.commands.common import CommandError, console, run_migrations
from sentinel.settings import Settings, database_url

if TYPE_CHECKING:
    from connectors.archive import ArchivedDay, ArchivePolicy, RetentionReport

log = logging.getLogger(__name__)

_UTC = dt.timezone.utc

# The pause between ``--watch`` rounds; a name of this module so that a test can replace
# it without replacing ``time.sleep`` for every thread of the process.
_pause = time.sleep


def _policy(settings: Settings) -> ArchivePolicy:
    from connectors.archive import ArchivePolicy

    return ArchivePolicy(
        default_calendar=settings.calendar, calendar_override=settings.calendar_override or None
    )


def _date(us: int) -> str:
    t = dt.datetime(1970, 1, 1, tzinfo=_UTC) + dt.timedelta(microseconds=us)
    return t.strftime("%Y-%m-%d %H:%M")


# -- sentinel archive ---------------------------------------------------------------------


def _chosen_days(args: argparse.Namespace) -> list[tuple[str, dt.date]] | None:
    if not args.day and not args.symbol:
        return None
    if not (args.day and args.symbol):
        raise CommandError("--day and --symbol go together: the days to archive again")
    try:
        days = [dt.date.fromisoformat(d) for d in args.day]
    except ValueError as exc:
        raise CommandError(f"--day takes YYYY-MM-DD: {exc}") from None
    symbols = [s.strip().upper() for s in args.symbol]
    return list(itertools.product(symbols, days))


def cmd_archive(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.archive import archive_days
    from dataflows.records import wall_clock_us

    uri = args.uri or settings.archive_location
    only = _chosen_days(args)
    dsn = database_url(settings, start=True)
    run_migrations(settings, dsn)
    if args.watch:
        if only is not None:
            raise CommandError("--watch archives what is due; --day/--symbol are for one run")
        return _watch(settings, dsn, uri)
    done = archive_days(dsn, uri, now_us=wall_clock_us(), policy=_policy(settings), only=only)
    _print_archived(done, uri)
    return 0


def _watch(settings: Settings, dsn: str, uri: str) -> int:
    """Archive what is due and apply retention every ``archive_every_s``, until Ctrl-C; a
    failed round (database or store unreachable) is reported and the next one tried."""
    import psycopg
    import pyarrow as pa

    from connectors.archive import ArchiveError, Problem, apply_retention, archive_days
    from dataflows.records import wall_clock_us

    every = settings.archive_every_s
    days = settings.ticks_retention_days
    console.print(
        f"archiving to {uri} every {every:g} s; "
        + (f"retention {days:g} days" if days > 0 else "retention off")
    )
    while True:
        try:
            done = archive_days(dsn, uri, now_us=wall_clock_us(), policy=_policy(settings))
            if done:
                _print_archived(done, uri)
            if days > 0:
                report = apply_retention(
                    dsn, uri, days, now_us=wall_clock_us(), policy=_policy(settings)
                )
                # Days waiting to settle are routine: report drops and real refusals.
                checks = [v for c in report.refused for v in c.refused]
                if report.dropped or any(v.problem is not Problem.UNSETTLED for v in checks):
                    _print_retention(report)
        except (psycopg.Error, OSError, pa.ArrowException, ArchiveError) as exc:
            console.print(f"[yellow]archive round failed:[/] {exc}; next one in {every:g} s")
        _pause(every)


def _print_archived(done: list[ArchivedDay], uri: str) -> None:
    if not done:
        console.print(f"archive {uri}: nothing due")
        return
    table = Table(title=f"archived to {uri}", title_justify="left")
    for column in ("symbol", "day", "calendar", "rows", "file"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for d in done:
        rows = f"{d.rows:,}" + ("" if d.replaced_rows is None else f" (was {d.replaced_rows:,})")
        table.add_row(d.symbol, d.day.isoformat(), d.calendar, rows, d.uri)
    console.print(table)
    console.print(f"{len(done)} day(s), {sum(d.rows for d in done):,} rows, verified")


# -- sentinel retention -------------------------------------------------------------------


def cmd_retention(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.archive import apply_retention
    from dataflows.records import wall_clock_us

    days = settings.ticks_retention_days if args.days is None else args.days
    if days < 0:
        raise CommandError("--days must be 0 (never drop) or more")
    uri = args.uri or settings.archive_location
    dsn = database_url(settings, start=True)
    run_migrations(settings, dsn)
    report = apply_retention(
        dsn, uri, days, now_us=wall_clock_us(), dry_run=args.dry_run, policy=_policy(settings)
    )
    _print_retention(report)
    return 0


def _print_retention(report: RetentionReport) -> None:
    if report.action == "disabled":
        console.print("retention is off (SENTINEL_TICKS_RETENTION_DAYS=0): nothing dropped")
        return
    if report.action in {"unsupported", "busy"}:
        console.print(f"[yellow]retention not run:[/] {report.action} (license {report.license})")
        return
    verb = "would drop" if report.action == "dry run" else "dropped"
    if not report.chunks:
        cutoff = _date(report.cutoff_us or 0)
        console.print(f"retention {report.days:g} days: no ticks chunk ended before {cutoff}")
        return
    table = Table(title=f"ticks chunks older than {report.days:g} days", title_justify="left")
    for column in ("chunk", "range (UTC)", "days", "decision", "why kept"):
        table.add_column(column)
    for c in report.chunks:
        # The details (which day, why) are in the warnings logged as each chunk is kept.
        problems = [v.problem.value for v in c.refused if v.problem is not None]
        why = ", ".join(f"{p} ({problems.count(p)})" for p in dict.fromkeys(problems))
        if c.rearchived:
            why += ", archived again"
        decision = f"[green]{verb}[/]" if c.dropped else "[yellow]kept[/]"
        span = f"{_date(c.range_start_us)} .. {_date(c.range_end_us)}"
        table.add_row(c.chunk, span, str(len(c.checks)), decision, why)
    console.print(table)
    console.print(f"{len(report.dropped)} chunk(s) {verb}, {len(report.refused)} kept")
