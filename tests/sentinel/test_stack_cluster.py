"""The stack restarts the processes of a Bytewax cluster together, and only those."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from sentinel.stack import Stack
from tests.integration.procs import wait_until

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[Stack, Clock]]:
    clock = Clock()
    stack = Stack(tmp_path / "logs", Console(quiet=True), backoff_s=1.0, clock=clock)
    yield stack, clock
    stack.stop_all(timeout=5)


def test_one_process_down_restarts_the_whole_cluster(supervised: tuple[Stack, Clock]) -> None:
    stack, clock = supervised
    a = stack.spawn("dataflow-0", SLEEP, {}, group="dataflow")
    b = stack.spawn("dataflow-1", SLEEP, {}, group="dataflow")
    api = stack.spawn("api", SLEEP, {})
    old = {c.name: c.proc.pid for c in (a, b, api)}
    b.proc.kill()
    b.proc.wait(10)

    events = stack.supervise()
    assert len(events) == 1
    assert events[0].startswith(
        "dataflow-1 was killed by SIGKILL; restarting the whole dataflow cluster (2 processes)"
    )
    assert a.proc.poll() is not None, "the running member is stopped with the one that died"
    assert api.proc.poll() is None, "what is not in the group keeps running"
    assert a.restart_at == b.restart_at == clock.now + 1.0

    clock.now += 0.5
    assert stack.supervise() == [], "nothing restarts before the backoff is over"
    clock.now += 0.6
    events = stack.supervise()
    assert events == ["dataflow-0 restarted (restart 1)", "dataflow-1 restarted (restart 1)"]
    assert a.proc.poll() is None
    assert b.proc.poll() is None
    assert a.proc.pid != old["dataflow-0"]
    assert b.proc.pid != old["dataflow-1"]
    assert api.proc.pid == old["api"]
    assert api.restarts == 0


def test_backoff_grows_for_the_group_as_for_one_child(supervised: tuple[Stack, Clock]) -> None:
    stack, clock = supervised
    a = stack.spawn("dataflow-0", SLEEP, {}, group="dataflow")
    b = stack.spawn("dataflow-1", SLEEP, {}, group="dataflow")
    for delay in (1.0, 2.0, 4.0):
        a.proc.kill()
        a.proc.wait(10)
        (event,) = stack.supervise()
        assert f"in {delay:.1f} s" in event
        assert a.restart_at == b.restart_at
        clock.now += delay
        assert len(stack.supervise()) == 2


def test_a_child_without_a_group_restarts_alone(supervised: tuple[Stack, Clock]) -> None:
    stack, _clock = supervised
    feed = stack.spawn("feed", SLEEP, {})
    other = stack.spawn("archive", SLEEP, {})
    feed.proc.kill()
    feed.proc.wait(10)
    (event,) = stack.supervise()
    assert event.startswith("feed was killed by SIGKILL; restarting it in 1.0 s")
    assert other.proc.poll() is None
    assert other.restart_at is None


def test_a_child_killed_with_sigkill_takes_its_own_children_with_it(
    supervised: tuple[Stack, Clock], tmp_path: Path
) -> None:
    """As uvicorn's workers: a child killed with -9 cannot stop them, the stack does."""
    stack, _ = supervised
    pid_file = tmp_path / "worker.pid"
    parent = (
        "import subprocess, sys, time\n"
        f"w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(w.pid))\n"
        "time.sleep(120)\n"
    )
    api = stack.spawn("api", [sys.executable, "-c", parent], {})
    wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", 30, "the worker")
    worker = int(pid_file.read_text())
    api.proc.kill()
    api.proc.wait(10)
    assert _alive(worker), "orphaned, and still running"
    stack.supervise()
    wait_until(lambda: not _alive(worker), 10, "the worker gone")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


# Ignores SIGINT (as a Bytewax cluster process does while its peers run) and says which
# signals reached it; exits on SIGTERM.
STUBBORN = """
import signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
def on(sig, _):
    log.write(f"{signal.Signals(sig).name} {sys.argv[2]}\\n")
    if sig == signal.SIGTERM:
        sys.exit(0)
signal.signal(signal.SIGINT, on)
signal.signal(signal.SIGTERM, on)
log.write(f"ready {sys.argv[2]}\\n")
while True:
    time.sleep(1)
"""


def test_stopping_signals_every_process_before_waiting_on_any(tmp_path: Path) -> None:
    """Ctrl-C on a cluster: one by one, each stubborn process cost a whole timeout."""
    log = tmp_path / "signals.log"
    stack = Stack(tmp_path / "logs", Console(quiet=True))
    for i in range(2):
        stack.spawn(f"dataflow-{i}", [sys.executable, "-c", STUBBORN, str(log), str(i)], {})
    wait_until(lambda: log.exists() and log.read_text().count("ready") == 2, 30, "both ready")
    procs = [child.proc for child in stack.children]
    stack.stop_all(timeout=1)
    lines = log.read_text().splitlines()[2:]
    assert sorted(lines[:2]) == ["SIGINT 0", "SIGINT 1"], lines
    assert sorted(lines[2:]) == ["SIGTERM 0", "SIGTERM 1"], lines
    assert [proc.returncode for proc in procs] == [0, 0]
