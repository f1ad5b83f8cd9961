"""Real processes the end-to-end tests start: an MLflow tracking server on 127.0.0.1 that can
be stopped and started again on the same port, and read-only views of its sqlite store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_group(proc: subprocess.Popen) -> None:
    """Stop a process a test started, with everything it spawned (its own session)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_for_health(base: str, process: subprocess.Popen, timeout: float = 90, log: Path | None = None) -> None:
    """Wait until the MLflow server at ``base`` answers ``/health``; fail at once if ``process`` ended."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                said = log.read_text()[-2000:] if log is not None else f"exit {process.poll()}"
                raise RuntimeError(f"the MLflow UI at {base} did not answer within {timeout:.0f} s: {said}") from None
            time.sleep(0.5)


class MlflowServer:
    """``mlflow server`` on 127.0.0.1: sqlite backend, artifacts proxied, restartable."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder, self.port = folder, port or free_port()
        self.db = folder / "mlflow.db"
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> "MlflowServer":
        from sweep.tracking.client import create_sqlite_store

        self.folder.mkdir(parents=True, exist_ok=True)
        create_sqlite_store(f"sqlite:///{self.db}")  # a copy of an empty store: the server skips ~50 migrations (5 s)
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.db}", "--artifacts-destination", str(self.folder / "artifacts"),
        ]
        log = (self.folder / "server.log").open("a")
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError((self.folder / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not start in {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None


def child_run_progress(db: Path) -> tuple[int, int]:
    """(ended trials, running trials with a checkpoint) of an MLflow sqlite store, read-only.

    Read-only sqlite, not an MlflowClient: a second MLflow store object on a database that a
    driver is still creating races its schema migration.
    """
    if not db.exists():
        return 0, 0
    query = """
        SELECT r.status,
               (SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = 'sweep.status'),
               EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = 'sweep.checkpoint')
        FROM runs r
        WHERE EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = 'mlflow.parentRunId')"""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as connection:
            rows = connection.execute(query).fetchall()
    except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
        return 0, 0
    ended = sum(1 for _, status, _ in rows if status in ("completed", "stopped_early"))
    running = sum(1 for state, _, checkpoint in rows if state == "RUNNING" and checkpoint)
    return ended, running
