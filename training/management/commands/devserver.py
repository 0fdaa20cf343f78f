"""manage.py devserver: the web server and two Celery workers (the cpu queue, and the gpu
queue for model jobs, so a training run never holds up an import); Ctrl-C stops them all."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from training.queueing import ensure_broker_folders


class Command(BaseCommand):
    help = "Run the web app and the workers (queues cpu and gpu) in one terminal."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_broker_folders()
        workers = [_worker(queue) for queue in ("cpu", "gpu")]
        web = subprocess.Popen([sys.executable, "manage.py", "runserver", options["addr"]])
        pids = ", ".join(str(worker.pid) for worker in workers)
        self.stdout.write(f"Web on http://{options['addr']}  workers (cpu, gpu) pids {pids}")
        processes = [web, *workers]
        try:
            while all(process.poll() is None for process in processes):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


def _worker(queue: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue]
    options = ["--concurrency", "1", "--pool", "solo", "--loglevel", "INFO", "-n", f"{queue}@%h"]
    return subprocess.Popen([*command, *options])
