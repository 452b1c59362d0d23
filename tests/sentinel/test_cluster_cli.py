"""`sentinel dataflow -i/-a/--processes` and `sentinel up --processes`: the arguments."""

from __future__ import annotations

import argparse

import pytest

from sentinel.cli import build_parser
from sentinel.commands.common import CommandError
from sentinel.commands.live import cluster_args, cluster_commands


def test_dataflow_takes_bytewax_cluster_arguments() -> None:
    args = build_parser().parse_args(
        ["dataflow", "-w", "2", "-i", "1", "-a", "10.0.0.1:2101,10.0.0.2:2101"]
    )
    assert args.workers == 2
    assert cluster_args(args) == (1, ["10.0.0.1:2101", "10.0.0.2:2101"])


def test_addresses_may_be_separated_as_bytewax_does() -> None:
    args = argparse.Namespace(process_id=0, addresses="a:1; b:2;")
    assert cluster_args(args) == (0, ["a:1", "b:2"])


def test_one_process_by_default() -> None:
    args = build_parser().parse_args(["dataflow"])
    assert cluster_args(args) == (None, None)
    assert args.processes is None


@pytest.mark.parametrize(
    ("process_id", "addresses", "message"),
    [
        (0, None, "needs both"),
        (None, "a:1,b:2", "needs both"),
        (2, "a:1,b:2", "not an index"),
        (-1, "a:1", "not an index"),
    ],
)
def test_cluster_arguments_are_checked(
    process_id: int | None, addresses: str | None, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        cluster_args(argparse.Namespace(process_id=process_id, addresses=addresses))


def test_up_runs_one_dataflow_command_per_process_on_the_same_addresses() -> None:
    assert build_parser().parse_args(["up", "--processes", "3"]).processes == 3
    sentinel = ["python", "-m", "sentinel"]
    assert cluster_commands(sentinel, 2, 1, []) == [[*sentinel, "dataflow", "-w", "2"]]
    commands = cluster_commands(sentinel, 1, 2, [2101, 2102])
    addresses = "127.0.0.1:2101,127.0.0.1:2102"
    assert commands == [
        [*sentinel, "dataflow", "-w", "1", "-i", "0", "-a", addresses],
        [*sentinel, "dataflow", "-w", "1", "-i", "1", "-a", addresses],
    ]
    for i, command in enumerate(commands):
        parsed = build_parser().parse_args(command[3:])
        assert cluster_args(parsed) == (i, ["127.0.0.1:2101", "127.0.0.1:2102"])
