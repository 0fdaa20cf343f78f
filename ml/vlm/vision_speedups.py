"""Speed-ups for relsim on Qwen2.5-VL: batched vision attention, a frozen vision tower kept
out of autograd (with optional feature reuse) and a vectorised query-token gather."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from ml.vlm.vision_attention import (
    batched_segment_attention,
    is_vision_attention_patched,
    patch_vision_attention,
    unpatch_vision_attention,
)
from ml.vlm.vision_features import (
    VisionFeatureCache,
    check_vision_frozen,
    compute_image_features,
    find_vlm_core,
    inject_image_features,
    language_hidden_states,
    multimodal_token_types,
)

__all__ = [
    "VisionFeatureCache",
    "batched_segment_attention",
    "check_vision_frozen",
    "compute_image_features",
    "find_vlm_core",
    "frozen_vision_embeddings",
    "gather_token_states",
    "inject_image_features",
    "is_vision_attention_patched",
    "language_hidden_states",
    "multimodal_token_types",
    "patch_vision_attention",
    "unpatch_vision_attention",
]


def gather_token_states(
    hidden: torch.Tensor, input_ids: torch.Tensor, token_id: int, *, check: bool = True
) -> torch.Tensor:
    """Hidden state (batch, dim) at the one `token_id` of each row, in one indexing op.

    With check=True a row without exactly one such token raises; the check costs one small
    device-to-host copy, so hot loops that validated their inputs may pass check=False."""
    is_token = input_ids == token_id
    if check:
        counts = is_token.sum(dim=1)
        if not bool((counts == 1).all()):
            raise ValueError(
                f"each row needs exactly one token {token_id}; found {counts.tolist()}"
            )
    # argmax over a 0/1 row gives the first 1: the token's position.
    positions = is_token.int().argmax(dim=1)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, positions]


class RelsimLike(Protocol):
    """What frozen_vision_embeddings needs of a relsim model (ml.relsim.RelsimModel)."""

    backbone: nn.Module
    projection: nn.Linear
    query_token_id: int


def frozen_vision_embeddings(
    model: RelsimLike,
    batch: Mapping[str, torch.Tensor],
    image_features: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The relsim embeddings RelsimModel.forward gives for `batch`, with the vision tower run
    under no_grad (or not at all when `image_features` come from a VisionFeatureCache)."""
    if image_features is None:
        image_features = compute_image_features(
            model.backbone, batch["pixel_values"], batch["image_grid_thw"]
        )
    hidden = language_hidden_states(
        model.backbone,
        batch["input_ids"],
        batch.get("attention_mask"),
        batch["image_grid_thw"],
        image_features,
        mm_token_type_ids=batch.get("mm_token_type_ids"),
    )
    states = gather_token_states(hidden, batch["input_ids"], model.query_token_id)
    # float32 head and normalisation, as the model's own forward does.
    return F.normalize(model.projection(states.float()), dim=-1)
