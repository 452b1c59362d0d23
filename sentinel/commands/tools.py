"""``sentinel simulate``, ``evaluate``, ``bench``, ``grafana``."""

from __future__ import annotations

import argparse

from sentinel.commands.common import (
    CommandError,
    console,
    out,
)
from sentinel.settings import (
    Settings,
    database_url,
)

# -- sentinel simulate --------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from connectors import simulator_server

    token = settings.finnhub_token.get_secret_value() if settings.finnhub_token else None
    simulator_server.run(
        args.host,
        args.port,
        seed=args.seed if args.seed is not None else settings.sim_seed,
        rate=args.rate or settings.sim_rate,
        token=token,
        bad_rate=args.bad_rate,
        calendar=(args.calendar or settings.calendar) if args.sessions else None,
    )
    return 0


# -- sentinel evaluate --------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from rich.markup import escape
    from rich.progress import Progress, TaskID

    from online_models.sp500 import format_table
    from sentinel.evaluate import evaluate, plot

    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise CommandError(f"--plot writes a PNG: {args.plot} does not end in .png")
    if args.plot is not None and not args.plot.parent.is_dir():
        raise CommandError(f"--plot: no directory {args.plot.parent}")
    with Progress(console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                label = "dataflow, all models" if what == "dataflow" else f"refitting {what}"
                tasks[what] = bar.add_task(label, total=total)
            bar.update(tasks[what], completed=done, total=total)

        evaluation, flow_seconds = evaluate(
            args.series,
            burn_in=args.burn_in,
            garch_refit=args.garch_refit,
            horizons=args.horizons,
            progress=progress,
        )
    out.print(escape(format_table(evaluation)))
    out.print(f"\ndataflow: {flow_seconds:.1f} s for the whole series (all models, all outputs)")
    if args.plot is not None:
        with console.status(f"drawing {args.plot}..."):
            path = plot(evaluation, args.plot)
        out.print(f"plot: {path}")
    return 0


# -- sentinel bench -----------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from sentinel.bench import run
    from sentinel.bench_api import ApiOptions
    from sentinel.bench_live import LiveBenchError
    from sentinel.flows import tune_gc

    dsn = database_url(settings, start=True)
    tune_gc()  # as every process that runs a dataflow
    try:
        result = run(
            dsn,
            ticks=args.ticks,
            echo=lambda m: console.print(f"[dim]bench:[/] {m}"),
            api=not args.no_api,
            live=not args.no_live,
            soak=args.soak,
            api_only=args.api_only,
            api_options=ApiOptions(
                long_history=not args.no_long_history,
                layout=args.api_layout,
                second_span_s=args.long_span,
                workers=args.api_workers or settings.api_workers,
            ),
        )
    except LiveBenchError as exc:
        raise CommandError(f"the live bench failed: {exc}") from None
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
            args.url,
            token=args.token,
            user=args.user,
            password=args.password,
            env=os.environ,
            webhook_url=args.webhook_url,
            force=args.force,
        )
    except SyncError as exc:
        raise CommandError(str(exc)) from exc
    for line in report.lines():
        out.print(line)
    return 0
