"""Every retrieval baseline by name behind the one Embedder interface: `make_embedder("clip-i",
clip=FOLDER)`. A BaselineFactory loads each model once when several baselines share it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ml.baselines.attributes import ColourHistogram, DctHash, DifferenceHash, RawPixels
from ml.baselines.text import (
    AbstractCaptioner,
    CaptionConfig,
    CaptionTextEmbedder,
    ClipTextEncoder,
    MiniLMTextEncoder,
    TextEncoder,
)
from ml.baselines.tuned import TunedEmbedder, load_tuned
from ml.baselines.vision import (
    ClipImageEmbedder,
    DinoEmbedder,
    LoadedClip,
    LoadedDino,
    load_clip,
    load_dinov2,
    resolve_device,
)
from ml.search.embedder import Embedder
from ml.vlm.backbone import LoadedVLM, load_vlm

__all__ = [
    "BASELINE_NAMES",
    "DEFAULT_CLIP",
    "DEFAULT_DINO",
    "DEFAULT_VLM",
    "BaselineFactory",
    "make_embedder",
]

# The paper's models; hub names only load where a local Hugging Face cache holds them.
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
DEFAULT_DINO = "facebook/dinov2-large"
DEFAULT_VLM = "Qwen/Qwen2.5-VL-7B-Instruct"

BASELINE_NAMES = (
    "clip-i",
    "clip-t",
    "dino",
    "qwen-t",
    "qwen-t-minilm",
    "tuned-clip",
    "tuned-dino",
    "pixels",
    "histogram",
    "phash",
    "dhash",
    "relsim",
)

PathLike = str | Path


class BaselineFactory:
    """Builds baselines from model folders (or hub names), loading each model at most once."""

    def __init__(
        self,
        *,
        clip: PathLike | None = None,
        dino: PathLike | None = None,
        vlm: PathLike | None = None,
        text_model: PathLike | None = None,
        tuned_clip: PathLike | None = None,
        tuned_dino: PathLike | None = None,
        relsim: PathLike | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        caption_config: CaptionConfig | None = None,
        batch_size: int = 32,
    ) -> None:
        self.clip_path = clip or DEFAULT_CLIP
        self.dino_path = dino or DEFAULT_DINO
        self.vlm_path = vlm or DEFAULT_VLM
        self.text_model = text_model
        self.tuned_clip = tuned_clip
        self.tuned_dino = tuned_dino
        self.relsim = relsim
        self.device = resolve_device(device)
        self.dtype = dtype
        self.caption_config = caption_config
        self.batch_size = batch_size
        self._clip: LoadedClip | None = None
        self._dino: LoadedDino | None = None
        self._captioner: AbstractCaptioner | None = None
        self._minilm: MiniLMTextEncoder | None = None

    def clip(self) -> LoadedClip:
        if self._clip is None:
            self._clip = load_clip(self.clip_path, device=self.device, dtype=self.dtype)
        return self._clip

    def dino(self) -> LoadedDino:
        if self._dino is None:
            self._dino = load_dinov2(self.dino_path, device=self.device, dtype=self.dtype)
        return self._dino

    def captioner(self) -> AbstractCaptioner:
        """One captioner (and caption cache) shared by every caption-then-embed baseline."""
        if self._captioner is None:
            vlm: LoadedVLM = load_vlm(self.vlm_path, dtype=self.dtype, device=self.device)
            self._captioner = AbstractCaptioner(vlm, self.caption_config)
        return self._captioner

    def minilm(self) -> MiniLMTextEncoder:
        if self._minilm is None:
            self._minilm = MiniLMTextEncoder(self.text_model, device=self.device)
        return self._minilm

    def _needs(self, value: PathLike | None, name: str, what: str) -> PathLike:
        if value is None:
            raise ValueError(f"baseline {name!r} needs {what}")
        return value

    def make(self, name: str) -> Embedder:
        """The baseline called `name` (one of BASELINE_NAMES)."""
        builders: dict[str, Callable[[], Embedder]] = {
            "clip-i": lambda: ClipImageEmbedder(self.clip(), batch_size=self.batch_size),
            "dino": lambda: DinoEmbedder(self.dino(), batch_size=self.batch_size),
            "clip-t": lambda: self._caption_embedder("clip-t", ClipTextEncoder(self.clip())),
            # The paper's Qwen-T: the release embeds Qwen's abstract caption with CLIP's text
            # tower. It captions as our CLIP-T does, so the two give the same rows here.
            "qwen-t": lambda: self._caption_embedder("qwen-t", ClipTextEncoder(self.clip())),
            # The same captions in the MiniLM space relsim aligns its images to.
            "qwen-t-minilm": lambda: self._caption_embedder("qwen-t-minilm", self.minilm()),
            "tuned-clip": lambda: self._tuned("tuned-clip", self.tuned_clip),
            "tuned-dino": lambda: self._tuned("tuned-dino", self.tuned_dino),
            "pixels": RawPixels,
            "histogram": ColourHistogram,
            "phash": DctHash,
            "dhash": DifferenceHash,
            "relsim": self._relsim,
        }
        builder = builders.get(name)
        if builder is None:
            raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINE_NAMES)}")
        return builder()

    def _caption_embedder(self, name: str, encoder: TextEncoder) -> Embedder:
        return CaptionTextEmbedder(self.captioner(), encoder, name=name)

    def _tuned(self, name: str, checkpoint: PathLike | None) -> Embedder:
        folder = self._needs(checkpoint, name, f"{name.replace('-', '_')}=CHECKPOINT_FOLDER")
        model = load_tuned(folder, device=self.device, dtype=self.dtype)
        return TunedEmbedder(model, name=name, batch_size=self.batch_size)

    def _relsim(self) -> Embedder:
        from ml.relsim.checkpoint import load_checkpoint
        from ml.search.embed import RelsimEmbedder

        folder = self._needs(self.relsim, "relsim", "relsim=CHECKPOINT_FOLDER")
        model = load_checkpoint(folder, dtype=self.dtype, device=self.device)
        return RelsimEmbedder(model, batch_size=self.batch_size)


def make_embedder(
    name: str,
    *,
    clip: PathLike | None = None,
    dino: PathLike | None = None,
    vlm: PathLike | None = None,
    text_model: PathLike | None = None,
    tuned_clip: PathLike | None = None,
    tuned_dino: PathLike | None = None,
    relsim: PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    caption_config: CaptionConfig | None = None,
    batch_size: int = 32,
) -> Embedder:
    """One baseline by name. Model arguments are folders (or hub names): `clip` for clip-i,
    clip-t and qwen-t, `dino` for dino, `vlm` (Qwen2.5-VL) for clip-t, qwen-t and
    qwen-t-minilm, `text_model` (MiniLM) for qwen-t-minilm, checkpoints for tuned-clip,
    tuned-dino and relsim. The weight-free ones (pixels, histogram, phash, dhash) need
    nothing."""
    factory = BaselineFactory(
        clip=clip,
        dino=dino,
        vlm=vlm,
        text_model=text_model,
        tuned_clip=tuned_clip,
        tuned_dino=tuned_dino,
        relsim=relsim,
        device=device,
        dtype=dtype,
        caption_config=caption_config,
        batch_size=batch_size,
    )
    return factory.make(name)
