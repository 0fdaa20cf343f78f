"""The two callbacks every long-running ml function takes, so a Celery task, a management
command or a notebook can watch and stop it without ml/ knowing who is calling; and the
trainers' shared command line, which drives them from a terminal."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

# progress(done, total, message): called every few seconds at most, never per sample.
ProgressFn = Callable[[int, int, str], None]
# should_stop(): polled between steps; True asks the loop to save what it has and return.
StopFn = Callable[[], bool]


def no_progress(done: int, total: int, message: str) -> None:
    """Default progress callback: report nothing."""


def never_stop() -> bool:
    """Default stop callback: run to the end."""
    return False


def training_command(
    argv: list[str] | None,
    description: str,
    train: Callable[[Path, ProgressFn, StopFn], Any],
) -> int:
    """A trainer's `--config FILE` command line: progress on stderr, SIGINT/SIGTERM stop after
    the current step (which saves), the result (a dataclass) as one JSON line on stdout."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, type=Path, help="training config (JSON)")
    args = parser.parse_args(argv)
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def report(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    result = train(args.config, report, lambda: stop_requested)
    print(json.dumps({k: str(v) for k, v in asdict(result).items()}))
    return 0
