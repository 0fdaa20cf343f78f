"""A real Celery worker process for the integration tests, and waiting on what it does."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{port}/{db['NAME']}"


@pytest.fixture
def start_worker(data_dir: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "RELSIM_DATA_DIR": str(data_dir),
        "RELSIM_IMPORT_ROOTS": ",".join(settings.RELSIM_IMPORT_ROOTS),
        "RELSIM_JOB_HEARTBEAT_SECONDS": "1",
        "RELSIM_WORKER_BEAT_SECONDS": "1",
        "RELSIM_JOB_STALE_SECONDS": "5",
        "RELSIM_JOB_PROGRESS_MS": "100",
        "PYTHONUNBUFFERED": "1",
    }
    if "data_folder_in" in options:
        # Share the test process's filesystem broker folder with the worker.
        env["RELSIM_BROKER_DIR"] = str(Path(str(options["data_folder_in"])).parent)

    def start() -> subprocess.Popen[bytes]:
        log = (data_dir / f"worker-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "cpu,gpu",
                "--pool",
                "solo",
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
                "-n",
                f"test{len(started)}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, data_dir: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in data_dir.glob("worker-*.log"))
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def purge_queues() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        for queue in ("cpu", "gpu"):
            # A queue that was never declared has nothing to purge.
            with contextlib.suppress(Exception):
                conn.default_channel.queue_purge(queue)
