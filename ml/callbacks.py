"""The two callbacks every long-running ml function takes, so a Celery task, a management
command or a notebook can watch and stop it without ml/ knowing who is calling."""

from __future__ import annotations

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
