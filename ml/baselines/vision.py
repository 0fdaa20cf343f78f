"""CLIP-I and DINO baselines: image features of a CLIPModel (openai/clip-vit-large-patch14 in
the paper) and the CLS token of a Dinov2Model (facebook/dinov2-large), from local folders."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from PIL import Image
from transformers import CLIPModel, Dinov2Model, PreTrainedTokenizerBase
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from ml.vlm.backbone import quiet_transformers

__all__ = [
    "ClipImageEmbedder",
    "DinoEmbedder",
    "LoadedClip",
    "LoadedDino",
    "load_clip",
    "load_dinov2",
    "resolve_device",
]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The given device, or the GPU when there is one."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _is_local(path: str | Path) -> bool:
    return Path(path).is_dir()


@dataclass
class LoadedClip:
    model: CLIPModel
    image_processor: CLIPImageProcessorPil
    tokenizer: PreTrainedTokenizerBase | None  # None when the folder has no tokenizer files
    path: str

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device


@dataclass
class LoadedDino:
    model: Dinov2Model
    image_processor: BitImageProcessorPil
    path: str

    @property
    def device(self) -> torch.device:
        return cast(torch.Tensor, self.model.embeddings.cls_token).device


def load_clip(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    with_tokenizer: bool = True,
) -> LoadedClip:
    """A CLIPModel folder (tiny or real) or hub name, in eval mode, with its processor parts."""
    from transformers import AutoTokenizer

    local = _is_local(path)
    with quiet_transformers():
        model = CLIPModel.from_pretrained(str(path), dtype=dtype, local_files_only=local)
        processor = CLIPImageProcessorPil.from_pretrained(str(path), local_files_only=local)
        tokenizer = (
            AutoTokenizer.from_pretrained(str(path), local_files_only=local)
            if with_tokenizer
            else None
        )
    model = cast(CLIPModel, model.to(resolve_device(device)))  # type: ignore[arg-type]
    model.eval()
    return LoadedClip(model, processor, tokenizer, str(path))


def load_dinov2(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> LoadedDino:
    """A Dinov2Model folder (tiny or real) or hub name, in eval mode, with its processor."""
    local = _is_local(path)
    with quiet_transformers():
        model = Dinov2Model.from_pretrained(str(path), dtype=dtype, local_files_only=local)
        processor = BitImageProcessorPil.from_pretrained(str(path), local_files_only=local)
    model = cast(Dinov2Model, model.to(resolve_device(device)))  # type: ignore[arg-type]
    model.eval()
    return LoadedDino(model, processor, str(path))


def _rgb(images: Sequence[Image.Image]) -> list[Image.Image]:
    return [image.convert("RGB") for image in images]


def pixel_batch(
    processor: CLIPImageProcessorPil | BitImageProcessorPil,
    images: Sequence[Image.Image],
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The processor's pixel tensor for `images`, on `device` in the model's dtype."""
    pixels = processor(images=_rgb(images), return_tensors="pt")["pixel_values"]
    return cast(torch.Tensor, pixels).to(device=device, dtype=dtype)


def clip_image_features(clip: CLIPModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """CLIP's projected image embedding (what `get_image_features` returns), not normalised."""
    output = clip.get_image_features(pixel_values=pixel_values)
    return cast(torch.Tensor, output.pooler_output)


def dino_cls_features(dino: Dinov2Model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The CLS token of the final (layer-normed) hidden states."""
    return cast(torch.Tensor, dino(pixel_values=pixel_values).last_hidden_state[:, 0])


_Encode = Callable[[Sequence[Image.Image]], NDArray[np.float32]]


def _in_batches(
    images: Sequence[Image.Image], batch_size: int, encode: _Encode, dim: int
) -> NDArray[np.float32]:
    chunks = [encode(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    if not chunks:
        return np.zeros((0, dim), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


class ClipImageEmbedder:
    """CLIP-I: CLIP's projected image features, L2-normalised."""

    def __init__(self, clip: LoadedClip, *, name: str = "clip-i", batch_size: int = 32) -> None:
        self.clip = clip
        self.name = name
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self.clip.model.visual_projection.out_features)

    @torch.no_grad()
    def _encode(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        model = self.clip.model
        pixels = pixel_batch(self.clip.image_processor, images, self.clip.device, model.dtype)
        features = clip_image_features(model, pixels).float()
        return F.normalize(features, dim=-1).cpu().numpy()

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        return _in_batches(images, self.batch_size, self._encode, self.dim)


class DinoEmbedder:
    """DINO: the CLS token of DINOv2's last layer, L2-normalised."""

    def __init__(self, dino: LoadedDino, *, name: str = "dino", batch_size: int = 32) -> None:
        self.dino = dino
        self.name = name
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self.dino.model.config.hidden_size)

    @torch.no_grad()
    def _encode(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        model = self.dino.model
        pixels = pixel_batch(self.dino.image_processor, images, self.dino.device, model.dtype)
        features = dino_cls_features(model, pixels).float()
        return F.normalize(features, dim=-1).cpu().numpy()

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        return _in_batches(images, self.batch_size, self._encode, self.dim)
