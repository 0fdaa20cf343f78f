"""Vision-language backbones: loading Qwen2.5-VL (the real 7B or a tiny one), tiny builders for
tests, the frozen text tower, vision-tower speed-ups, and the LoRA tuning base that the
captioner and the filter share."""

from __future__ import annotations

from ml.vlm.backbone import (
    LoadedVLM,
    build_tiny_vlm,
    load_image_processor,
    load_qwen_model,
    load_tokenizer,
    load_vlm,
    lora_target_pattern,
    quiet_transformers,
    qwen25vl_7b_config,
)
from ml.vlm.text_tower import TEXT_DIM, TextTower, default_text_model_path
from ml.vlm.tiny_text import build_tiny_text_model
from ml.vlm.tiny_vision import build_tiny_clip, build_tiny_dinov2
from ml.vlm.tuned import (
    IGNORE_INDEX,
    ChatSample,
    TunedKind,
    TunedVLM,
    VisionChatBuilder,
    VLMTuneConfig,
    export_backbone,
    prepare_backbone,
)
from ml.vlm.vision_attention import patch_vision_attention, unpatch_vision_attention
from ml.vlm.vision_features import VisionFeatureCache, compute_image_features
from ml.vlm.vision_speedups import frozen_vision_embeddings

__all__ = [
    "IGNORE_INDEX",
    "TEXT_DIM",
    "ChatSample",
    "LoadedVLM",
    "TextTower",
    "TunedKind",
    "TunedVLM",
    "VLMTuneConfig",
    "VisionChatBuilder",
    "VisionFeatureCache",
    "build_tiny_clip",
    "build_tiny_dinov2",
    "build_tiny_text_model",
    "build_tiny_vlm",
    "compute_image_features",
    "default_text_model_path",
    "export_backbone",
    "frozen_vision_embeddings",
    "load_image_processor",
    "load_qwen_model",
    "load_tokenizer",
    "load_vlm",
    "lora_target_pattern",
    "patch_vision_attention",
    "prepare_backbone",
    "quiet_transformers",
    "qwen25vl_7b_config",
    "unpatch_vision_attention",
]
