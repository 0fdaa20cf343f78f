"""What every Celery worker does beside its jobs: prove it is alive (a WorkerBeat row per
worker, with its queues) and fail jobs whose own worker died, without waiting for anyone
to open a page or start another worker."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

from django.conf import settings
from django.db import close_old_connections, connection

from training import services
from training.gpu_count import visible_gpus

log = logging.getLogger(__name__)


class WorkerWatch:
    """A daemon thread in the worker's main process: one beat and one reap per period."""

    def __init__(self, name: str, queues: Iterable[str], *, period_s: float | None = None):
        self.name = name
        self.queues = sorted(set(queues))
        # Counted once: a worker's devices do not change while it runs.
        self.gpus = visible_gpus()
        self.period_s = period_s or settings.RELSIM_WORKER_BEAT_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relsim-worker-watch", daemon=True)

    def start(self) -> None:
        try:
            self.tick()
        finally:
            # Called in the worker's main process: leave no connection there for pool
            # processes forked later to share.
            connection.close()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        services.worker_gone(name=self.name)

    def tick(self) -> None:
        services.worker_beat(name=self.name, queues=self.queues, pid=os.getpid(), gpus=self.gpus)
        reaped = services.jobs_reap_stale()
        if reaped:
            log.warning("marked %s job(s) whose worker stopped responding as failed", reaped)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.period_s):
                close_old_connections()
                try:
                    self.tick()
                except Exception:
                    # A database hiccup must not end the watch; the next period tries again.
                    log.exception("worker watch failed; trying again in %s s", self.period_s)
        finally:
            connection.close()
