"""Run and supervise the processes of ``sentinel up``: simulator, feed, dataflow, API.

Each runs as a child process in its own session with its log under
``$SENTINEL_HOME/logs``. A child that exits (a crash, ``kill -9``) is restarted after a
backoff that doubles with each quick failure (``backoff_s`` up to ``backoff_max_s``; a
child that ran for ``healthy_s`` starts again from ``backoff_s``), and why it stopped is
reported with its last log lines. Children spawned in one ``group`` (the processes of
a Bytewax cluster, which can only be restarted as a whole) are stopped and restarted
together when any of them exits. Ctrl-C (or SIGTERM) stops them all at once:
SIGINT, then SIGTERM, then SIGKILL, each by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console


@dataclass
class Child:
    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0
    failures: int = 0  # consecutive exits soon after a start
    restart_at: float | None = None  # a restart is due then
    group: str | None = None  # restarted together with the rest of its group


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Stack:
    log_dir: Path
    console: Console
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    healthy_s: float = 60.0
    stop_timeout_s: float = 5.0  # per signal, stopping a group's other members
    clock: Callable[[], float] = time.monotonic
    children: list[Child] = field(default_factory=list)

    def spawn(
        self, name: str, cmd: list[str], env: dict[str, str], *, group: str | None = None
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        child = Child(name, cmd, env, log_path, self._popen(cmd, env, log_path), group=group)
        self.children.append(child)
        return child

    @staticmethod
    def _popen(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            return subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )

    def supervise(self) -> list[str]:
        """Notice exited children and restart those whose backoff is over; returns what
        happened, a line each."""
        now, events = self.clock(), []
        for child in self.children:
            code = child.proc.poll()
            if code is not None and child.restart_at is None:
                kill_group(child.proc)  # what it leaves behind (uvicorn's workers) goes too
                quick = now - child.started_at < self.healthy_s
                child.failures = child.failures + 1 if quick else 1
                delay = min(self.backoff_max_s, self.backoff_s * 2 ** (child.failures - 1))
                child.restart_at = now + delay
                events.append(
                    f"{child.name} {describe_exit(code)}; restarting {self._what(child)}"
                    f" in {delay:.1f} s\n" + self.tail(child)
                )
                siblings = self._siblings(child)
                stop_processes([sibling.proc for sibling in siblings], self.stop_timeout_s)
                for sibling in siblings:
                    sibling.failures, sibling.restart_at = child.failures, child.restart_at
            elif child.restart_at is not None and now >= child.restart_at:
                child.proc = self._popen(child.cmd, child.env, child.log_path)
                child.started_at, child.restart_at = now, None
                child.restarts += 1
                events.append(f"{child.name} restarted (restart {child.restarts})")
        return events

    def _siblings(self, child: Child) -> list[Child]:
        if child.group is None:
            return []
        return [c for c in self.children if c.group == child.group and c is not child]

    def _what(self, child: Child) -> str:
        siblings = self._siblings(child)
        if not siblings:
            return "it"
        return f"the whole {child.group} cluster ({len(siblings) + 1} processes)"

    def stop_all(self, timeout: float = 10.0) -> None:
        stop_processes([child.proc for child in reversed(self.children)], timeout)
        self.children.clear()

    def tail(self, child: Child, lines: int = 15) -> str:
        try:
            text = child.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGINT to all, then SIGTERM to those left, then SIGKILL, each round given
    ``timeout`` seconds in all; then whatever is left of their process groups.

    All at once, not one by one: a Bytewax cluster process ignores SIGINT while its
    peers still run, so stopping them in turn waited out a timeout for each."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        alive = [proc for proc in procs if proc.poll() is None]
        if not alive:
            break
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
        deadline = time.monotonic() + timeout
        for proc in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        kill_group(proc)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL to what is left of the process group of ``proc`` (an exited child started
    in a session of its own). A child killed with -9 cannot stop its own children: the
    API's uvicorn workers would go on serving its port, and the restarted API could not
    bind it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_for_port(host: str, port: int, timeout: float, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited with code {child.proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")
