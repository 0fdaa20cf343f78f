"""The one training loop that every model trains through, its run state (LR schedule,
checkpoints, exact resume) and the trainers' shared command line."""

from __future__ import annotations

from ml.train.cli import training_command
from ml.train.loop import (
    METRICS_FILE,
    LoopConfig,
    LoopContext,
    Schedule,
    StepOutput,
    Task,
    TrainResult,
    run_training,
)
from ml.train.run_state import CHECKPOINT_PREFIX, TRAINING_STATE_FILE, latest_checkpoint

__all__ = [
    "CHECKPOINT_PREFIX",
    "METRICS_FILE",
    "TRAINING_STATE_FILE",
    "LoopConfig",
    "LoopContext",
    "Schedule",
    "StepOutput",
    "Task",
    "TrainResult",
    "latest_checkpoint",
    "run_training",
    "training_command",
]
