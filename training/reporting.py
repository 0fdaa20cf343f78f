"""The bridge between an ml-style loop and a Job row: throttled progress, cancel checks,
and a heartbeat thread so a long step still proves the worker is alive."""

from __future__ import annotations

import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection

from training import services


class JobReporter:
    def __init__(self, job_id: int, *, heartbeat_s: float | None = None) -> None:
        self.job_id = job_id
        self._last_progress = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False
        self._heartbeat_s = heartbeat_s or settings.RELSIM_JOB_HEARTBEAT_SECONDS
        self._every_s = settings.RELSIM_JOB_PROGRESS_MS / 1000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"job-{job_id}-heartbeat")
        self._thread.daemon = True

    def __enter__(self) -> JobReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self._heartbeat_s):
                close_old_connections()
                services.job_heartbeat(job_id=self.job_id)
        finally:
            connection.close()

    def progress(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        finished = total > 0 and done >= total
        if not finished and now - self._last_progress < self._every_s:
            return
        self._last_progress = now
        fraction = done / total if total > 0 else 0.0
        text = f"{done}/{total} {message}" if total > 0 else message
        services.job_progress(job_id=self.job_id, fraction=fraction, message=text)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check >= self._every_s:
            self._last_cancel_check = now
            self._cancelled = services.job_cancel_requested(job_id=self.job_id)
        return self._cancelled

    def log(self, line: str) -> None:
        services.job_log(job_id=self.job_id, lines=[line])
