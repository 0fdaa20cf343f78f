"""manage.py devserver: the web server and two Celery workers (the cpu queue, and the gpu
queue for model jobs, so a training run never holds up an import); Ctrl-C stops them all."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from training.queueing import ensure_broker_folders


class Command(BaseCommand):
    help = "Run the web app and the workers (queues cpu and gpu) in one terminal."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        # Stopped by a signal (a terminal closing, `kill`) the same as by Ctrl-C: the workers
        # are stopped too, not left running.
        for stop in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop, _interrupt)
        ensure_broker_folders()
        workers = [_worker(queue) for queue in ("cpu", "gpu")]
        web = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", options["addr"]], start_new_session=True
        )
        pids = ", ".join(str(worker.pid) for worker in workers)
        self.stdout.write(f"Web on http://{options['addr']}  workers (cpu, gpu) pids {pids}")
        processes = [web, *workers]
        try:
            while all(process.poll() is None for process in processes):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            # Each runs in a process group of its own (the web server's autoreloader child,
            # a worker's job processes): the whole group is asked, then made, to stop.
            for process in processes:
                _signal_group(process, signal.SIGINT)
            for process in processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=15)
                _signal_group(process, signal.SIGKILL)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _worker(queue: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue]
    options = ["--concurrency", "1", "--pool", "solo", "--loglevel", "INFO", "-n", f"{queue}@%h"]
    return subprocess.Popen([*command, *options], start_new_session=True)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
