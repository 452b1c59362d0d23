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

# -- sentinel replay ----------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from bytewax.run import cli_main
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from sentinel.flows import replay_flow, tune_gc

    speed = None if args.speed == "max" else positive(args.speed, "--speed")
    bar_seconds = parse_interval(args.bar)
    if not args.file.exists():
        raise CommandError(f"{args.file}: no such file or directory")
    dsn = database_url(settings, start=True)
    run_migrations(settings, dsn)
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
