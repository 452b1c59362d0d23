"""``sentinel replay``: a file through the dataflow."""

from __future__ import annotations

import argparse
from datetime import timedelta

from sentinel.commands.common import (
    CommandError,
    console,
    ensure_recovery_dir,
    positive,
    run_migrations,
)
from sentinel.settings import (
    Settings,
    database_url,
    parse_interval,
)

_US = 1_000_000

# -- sentinel replay ----------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from bytewax.run import cli_main
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from sentinel.flows import replay_flow, tune_gc

    speed = None if args.speed == "max" else positive(args.speed, "--speed")
    bar_seconds = parse_interval(args.bar)
    # `--chunk-interval` (sentinel/cli.py); a parser without it means 'auto'.
    chunk_interval = _chunk_interval(getattr(args, "chunk_interval", None))
    if not args.file.exists():
        raise CommandError(f"{args.file}: no such file or directory")
    dsn = database_url(settings, start=True)
    run_migrations(settings, dsn)
    if chunk_interval != 0:
        presize_chunks_for(args, settings, dsn, bar_seconds, chunk_interval)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    progress = Progress(*columns, "rows", TimeRemainingColumn(), console=console)
    task = progress.add_task(f"replay {args.file.name}", total=None)

    def on_progress(done: int, total: int | None) -> None:
        progress.update(task, completed=done, total=total)

    flow = replay_flow(
        settings,
        dsn,
        args.file,
        bar_seconds=bar_seconds,
        speed=speed,
        symbols=args.symbol,
        store_ticks=not args.no_ticks,
        on_progress=on_progress,
        partitions=args.workers,
    )
    tune_gc()
    recovery = None
    if args.recovery_dir:
        from bytewax.recovery import RecoveryConfig

        ensure_recovery_dir(args.recovery_dir)
        recovery = RecoveryConfig(args.recovery_dir)
    epoch = timedelta(seconds=args.snapshot_interval)
    with progress:
        cli_main(
            flow, workers_per_process=args.workers, epoch_interval=epoch, recovery_config=recovery
        )
    console.print(f"replay of {args.file} done ({bar_seconds} s bars)")
    return 0


def _chunk_interval(text: str | None) -> int | None:
    """``--chunk-interval``: None for 'auto' (the default), 0 for 'off', else seconds."""
    choice = (text or "auto").strip().lower()
    if choice == "auto":
        return None
    if choice == "off":
        return 0
    try:
        return parse_interval(choice)
    except ValueError as exc:
        raise CommandError(f"--chunk-interval takes 'auto', 'off' or an interval: {exc}") from None


def presize_chunks_for(
    args: argparse.Namespace,
    settings: Settings,
    dsn: str,
    bar_seconds: int,
    interval_s: int | None,
) -> None:
    """Before the replay streams: chunks that fit the history it is about to write
    (:mod:`connectors.timescale.chunks`), one line per table. A file that cannot be
    profiled only costs the optimization; one that cannot be read at all is reported by
    the replay itself."""
    import pyarrow as pa

    from connectors.replay.formats import inspect_file
    from connectors.replay.profile import profile_file
    from connectors.timescale.chunks import presize_chunks, replay_loads

    symbols = frozenset(s.strip().upper() for s in args.symbol) or None
    try:
        info = inspect_file(args.file, count_rows=False)
    except ValueError:
        return
    try:
        profile = profile_file(info, symbols)
    except (OSError, pa.ArrowException) as exc:
        console.print(f"[yellow]chunks:[/] cannot profile {args.file.name}: {exc}")
        return
    if profile is None:
        return
    loads = replay_loads(
        profile,
        bar_us=bar_seconds * _US,
        checkpoint_every_us=int(settings.checkpoint_every_s * _US),
        store_ticks=not args.no_ticks,
    )
    override = None if interval_s is None else interval_s * _US
    for report in presize_chunks(dsn, loads, interval_us=override):
        console.print(f"[dim]chunks:[/] {report.line()}")
