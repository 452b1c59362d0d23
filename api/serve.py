"""Running the API on 127.0.0.1: in a thread (tests) or as a child process (``sentinel up``,
``sentinel bench``).

``uvicorn api.main:app`` is the production entry point. Its graceful shutdown waits for
open responses, and ``/stream`` responses never end, so give it
``--timeout-graceful-shutdown`` (:func:`uvicorn_command` does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from api.telemetry import MULTIPROC_ENV
from timescale.embedded import free_port

LOCALHOST = "127.0.0.1"


def uvicorn_command(
    host: str = LOCALHOST,
    port: int = 8000,
    workers: int = 1,
    app: str = "api.main:app",
    *,
    factory: bool = False,
) -> list[str]:
    """The command line that serves ``app`` (``api.main:app``: settings from the
    environment; ``factory``: ``app`` names a function that returns the app)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        *(["--factory"] if factory else []),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--timeout-graceful-shutdown",
        "3",
        "--no-access-log",
    ]


def workers_env(workers: int, metrics_dir: Path) -> dict[str, str]:
    """What ``workers`` uvicorn workers need beyond one: a directory (emptied here) where
    prometheus_client keeps each worker's request metrics, so that ``/metrics`` from any
    of them counts every worker's requests."""
    if workers == 1:
        return {}
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    return {MULTIPROC_ENV: str(metrics_dir)}


def wait_healthy(
    base_url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Until ``/health`` answers 200 (the API is up and the database reachable)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the API exited with code {proc.returncode}")
        try:
            r = httpx.get(f"{base_url}/health", timeout=2)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"the API at {base_url} was not healthy after {timeout_s:.0f} s: {last}")


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a daemon thread; yields the base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host=LOCALHOST, port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://{LOCALHOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@contextlib.contextmanager
def api_process(
    env: Mapping[str, str],
    port: int | None = None,
    log: Path | None = None,
    timeout_s: float = 30,
    workers: int = 1,
    app: str = "api.main:app",
    *,
    factory: bool = False,
) -> Iterator[str]:
    """``uvicorn app`` with ``workers`` worker processes as a child process (``env`` adds
    to the environment, e.g. ``DATABASE_URL``), in a process group of its own, stopped by
    that group (its workers too) on exit; yields the base URL once ``/health`` answers."""
    port = port or free_port()
    out = log.open("ab") if log else subprocess.DEVNULL
    metrics_dir = Path(tempfile.mkdtemp(prefix="sentinel-api-metrics-"))
    proc = subprocess.Popen(
        uvicorn_command(LOCALHOST, port, workers, app, factory=factory),
        env={**os.environ, **env, **workers_env(workers, metrics_dir)},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base_url = f"http://{LOCALHOST}:{port}"
        wait_healthy(base_url, timeout_s, proc)
        yield base_url
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        if log:
            out.close()  # type: ignore[union-attr]
        shutil.rmtree(metrics_dir, ignore_errors=True)
