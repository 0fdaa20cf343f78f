"""The trainers' shared command line (`python -m ml.relsim.train --config FILE` and the like),
which drives a training run from a terminal."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

from ml.callbacks import ProgressFn, StopFn

_ConfigT = TypeVar("_ConfigT", contravariant=True)


class _Trainer(Protocol[_ConfigT]):
    def __call__(self, config: _ConfigT, *, progress: ProgressFn, should_stop: StopFn) -> Any: ...


def training_command(
    argv: list[str] | None,
    description: str,
    load: Callable[[Path], _ConfigT],
    train: _Trainer[_ConfigT],
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

    result = train(load(args.config), progress=report, should_stop=lambda: stop_requested)
    # Under `accelerate launch` every process returns the result; one line is the answer.
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({k: str(v) for k, v in asdict(result).items()}))
    return 0
