"""The anonymous captioner, its prompts and caption clean-up, the relational-interest filter and
its threshold, and their training tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml.captioning.captioner import (
    CAPTIONER,
    Captioner,
    CaptionerConfig,
    CaptionResult,
    GenerationSettings,
    build_captioner,
    caption_group,
    caption_groups,
    caption_images,
    caption_loss,
    load_captioner,
    save_captioner,
)
from ml.captioning.interest_filter import (
    FILTER,
    FILTER_PROMPT_VERSION,
    NO,
    YES,
    FilterConfig,
    InterestFilter,
    ThresholdChoice,
    build_filter,
    choose_threshold,
    get_filter_prompt,
    interest_loss,
    load_filter,
    roc_auc,
    save_filter,
    score_images,
)
from ml.captioning.postprocess import CleanedCaption, clean_caption, unwrap_caption
from ml.captioning.prompts import PROMPT_VERSION, CaptionPrompt, get_prompt
from ml.captioning.synthetic_samples import SyntheticCaptionSamples, SyntheticFilterSamples
from ml.captioning.tuning import TunedLoopConfig
from ml.lazy import lazy_exports

if TYPE_CHECKING:
    from ml.captioning.captioner_training import (
        CaptionedGroup,
        CaptionerTrainConfig,
        caption_samples,
        read_seed_groups,
        train_captioner,
    )
    from ml.captioning.filter_training import FilterTrainConfig, read_filter_labels, train_filter

# Command modules load on first use (see ml.lazy).
_LAZY = {
    "CaptionedGroup": "ml.captioning.captioner_training",
    "CaptionerTrainConfig": "ml.captioning.captioner_training",
    "caption_samples": "ml.captioning.captioner_training",
    "read_seed_groups": "ml.captioning.captioner_training",
    "train_captioner": "ml.captioning.captioner_training",
    "FilterTrainConfig": "ml.captioning.filter_training",
    "read_filter_labels": "ml.captioning.filter_training",
    "train_filter": "ml.captioning.filter_training",
}

__all__ = [
    "CAPTIONER",
    "FILTER",
    "FILTER_PROMPT_VERSION",
    "NO",
    "PROMPT_VERSION",
    "YES",
    "CaptionPrompt",
    "CaptionResult",
    "CaptionedGroup",
    "Captioner",
    "CaptionerConfig",
    "CaptionerTrainConfig",
    "CleanedCaption",
    "FilterConfig",
    "FilterTrainConfig",
    "GenerationSettings",
    "InterestFilter",
    "SyntheticCaptionSamples",
    "SyntheticFilterSamples",
    "ThresholdChoice",
    "TunedLoopConfig",
    "build_captioner",
    "build_filter",
    "caption_group",
    "caption_groups",
    "caption_images",
    "caption_loss",
    "caption_samples",
    "choose_threshold",
    "clean_caption",
    "get_filter_prompt",
    "get_prompt",
    "interest_loss",
    "load_captioner",
    "load_filter",
    "read_filter_labels",
    "read_seed_groups",
    "roc_auc",
    "save_captioner",
    "save_filter",
    "score_images",
    "train_captioner",
    "train_filter",
    "unwrap_caption",
]

__getattr__ = lazy_exports(__name__, _LAZY)
