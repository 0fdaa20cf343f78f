"""Every retrieval baseline behind the one Embedder interface: weight-free attribute ones, CLIP-I
and DINO, caption-then-embed, and the tuned CLIP / DINO with their training task."""

from __future__ import annotations

from ml.baselines.attributes import (
    ColourHistogram,
    DctHash,
    DifferenceHash,
    RawPixels,
    attribute_baselines,
)
from ml.baselines.registry import BASELINE_NAMES, BaselineFactory, make_embedder
from ml.baselines.text import CaptionConfig, CaptionTextEmbedder
from ml.baselines.tuned import (
    TunedConfig,
    TunedEmbedder,
    TunedVisionModel,
    build_tuned_model,
    load_tuned,
    save_tuned,
    train_tuned_baseline,
)
from ml.baselines.vision import ClipImageEmbedder, DinoEmbedder, load_clip, load_dinov2

__all__ = [
    "BASELINE_NAMES",
    "BaselineFactory",
    "CaptionConfig",
    "CaptionTextEmbedder",
    "ClipImageEmbedder",
    "ColourHistogram",
    "DctHash",
    "DifferenceHash",
    "DinoEmbedder",
    "RawPixels",
    "TunedConfig",
    "TunedEmbedder",
    "TunedVisionModel",
    "attribute_baselines",
    "build_tuned_model",
    "load_clip",
    "load_dinov2",
    "load_tuned",
    "make_embedder",
    "save_tuned",
    "train_tuned_baseline",
]
