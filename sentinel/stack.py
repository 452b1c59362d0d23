"""Run and supervise the processes of ``sentinel up``: feed simulator, dataflow, API.

Each runs as a child process in its own session with its log under
``$SENTINEL_HOME/logs``. If one dies, the rest are stopped and its last log lines shown;
Ctrl-C (or SIGTERM) stops them all, newest first: SIGINT, then SIGTERM, then SIGKILL,
each by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from rich.console import Console

COUNTED_TABLES = ("ticks", "bars", "bar_metrics", "alerts", "ticks_rejected")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Stack:
    log_dir: Path
    console: Console
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
                start_new_session=True,
            )  # fmt: skip
        child = Child(name, proc, log_path)
        self.children.append(child)
        return child

    def failed(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop_all(self, timeout: float = 10.0) -> None:
        for child in reversed(self.children):
            _stop(child.proc, timeout)
        self.children.clear()

    def tail(self, child: Child, lines: int = 15) -> str:
        try:
            text = child.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


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


def row_counts(dsn: str) -> dict[str, int]:
    """Exact counts; cheap enough for a status line on a development database."""
    counts = {}
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        for table in COUNTED_TABLES:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts
