"""The relsim model: Qwen2.5-VL reading "image then <|query|>", its inputs, its contrastive loss,
checkpoints in the released layout, and its training task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml.lazy import lazy_exports
from ml.relsim.checkpoint import (
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from ml.relsim.inputs import QUERY_TOKEN, RelsimInputBuilder
from ml.relsim.losses import (
    ContrastiveLoss,
    image_to_text_loss,
    text_to_image_loss,
    unique_captions,
)
from ml.relsim.model import (
    RelsimConfig,
    RelsimModel,
    assemble_relsim_model,
    build_relsim_model,
    lora_config_for,
    query_positions,
)

if TYPE_CHECKING:
    from ml.relsim.train import TrainConfig, train_relsim

# Command modules load on first use (see ml.lazy).
_LAZY = {
    "TrainConfig": "ml.relsim.train",
    "train_relsim": "ml.relsim.train",
}

__all__ = [
    "QUERY_TOKEN",
    "CheckpointInfo",
    "ContrastiveLoss",
    "RelsimConfig",
    "RelsimInputBuilder",
    "RelsimModel",
    "TrainConfig",
    "assemble_relsim_model",
    "build_relsim_model",
    "image_to_text_loss",
    "load_checkpoint",
    "lora_config_for",
    "query_positions",
    "read_checkpoint_info",
    "save_checkpoint",
    "text_to_image_loss",
    "train_relsim",
    "unique_captions",
]

__getattr__ = lazy_exports(__name__, _LAZY)
