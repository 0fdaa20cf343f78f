"""The two callbacks every long-running ml function takes, so a Celery task, a management
command or a notebook can watch and stop it without ml/ knowing who is calling."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# progress(done, total, message): called every few seconds at most, never per sample.
ProgressFn = Callable[[int, int, str], None]
# should_stop(): polled between steps; True asks the loop to save what it has and return.
StopFn = Callable[[], bool]


def no_progress(done: int, total: int, message: str) -> None:
    """Default progress callback: report nothing."""


def never_stop() -> bool:
    """Default stop callback: run to the end."""
    return False


# Reports closer together than this are dropped (a caller's row update costs a query).
PROGRESS_EVERY_S = 2.0


class ThrottledProgress:
    """A progress callback that passes a report on at most every `every_s` seconds, unless it
    is forced (the first and last word of a run), and only where `enabled` (the main process)."""

    def __init__(
        self, progress: ProgressFn, *, every_s: float = PROGRESS_EVERY_S, enabled: bool = True
    ) -> None:
        self.progress = progress
        self.every_s = every_s
        self.enabled = enabled
        self.last = -math.inf

    def __call__(self, done: int, total: int, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.enabled and (force or now - self.last >= self.every_s):
            self.last = now
            self.progress(done, total, message)
