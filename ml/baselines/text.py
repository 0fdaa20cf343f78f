"""Caption-then-embed baselines (CLIP-T, Qwen-T): a VLM describes each image abstractly in at most
30 words, and a text encoder (CLIP's text tower, as in the paper, or MiniLM) embeds the caption."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from PIL import Image
from transformers import GenerationConfig

from ml.baselines.vision import LoadedClip
from ml.data.images import preprocess_image
from ml.search.embedder import l2_normalise
from ml.vlm.backbone import LoadedVLM

__all__ = [
    "CAPTION_PROMPT",
    "AbstractCaptioner",
    "CaptionConfig",
    "CaptionTextEmbedder",
    "ClipTextEncoder",
    "MiniLMTextEncoder",
    "TextEncoder",
    "image_key",
    "limit_words",
]

MAX_CAPTION_WORDS = 30
CAPTION_PROMPT = (
    "Look past what the things in this picture are and what they look like. In no more than "
    "30 words, state the idea that organises the picture: how its parts are arranged, repeat, "
    "contrast or depend on each other. Do not name particular objects, colours or materials."
)
_IMAGE_PAD = "<|image_pad|>"
_END_OF_TURN = "<|im_end|>"


@dataclass
class CaptionConfig:
    """How the VLM writes its abstract captions. Greedy decoding by default, so that a
    baseline's embeddings are reproducible; sampling uses the paper's captioner settings."""

    prompt: str = CAPTION_PROMPT
    max_words: int = MAX_CAPTION_WORDS
    max_new_tokens: int = 64
    image_size: int = 448  # centre crop + resize, as relsim sees images
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0  # for sampling
    batch_size: int = 8


def limit_words(text: str, max_words: int = MAX_CAPTION_WORDS) -> str:
    """Whitespace collapsed, surrounding quotes dropped, cut to the first `max_words` words."""
    words = text.strip().strip("\"'").split()
    return " ".join(words[:max_words])


def image_key(image: Image.Image) -> str:
    """A content hash of a decoded image, so one picture is captioned once however it arrives."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


class AbstractCaptioner:
    """Plain `generate` on a Qwen2.5-VL with our own prompt; captions cached by image content."""

    def __init__(self, vlm: LoadedVLM, config: CaptionConfig | None = None) -> None:
        self.vlm = vlm
        self.config = config or CaptionConfig()
        tokenizer = vlm.tokenizer
        vocab = tokenizer.get_vocab()
        if _IMAGE_PAD not in vocab or _END_OF_TURN not in vocab:
            raise ValueError(f"the VLM's tokenizer lacks {_IMAGE_PAD} or {_END_OF_TURN}")
        self.image_token_id = int(vocab[_IMAGE_PAD])
        self.end_id = int(vocab[_END_OF_TURN])
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.end_id)
        messages: Any = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": self.config.prompt}],
            }
        ]
        self.prompt_text = str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
        if self.prompt_text.count(_IMAGE_PAD) != 1:
            raise ValueError("the chat template must render exactly one image placeholder")
        self._cache: dict[str, str] = {}

    @property
    def device(self) -> torch.device:
        return cast(torch.Tensor, self.vlm.model.get_input_embeddings().weight).device

    def _inputs(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        size = self.config.image_size
        processed = [preprocess_image(image, size) for image in images]
        vision = self.vlm.image_processor(images=processed, return_tensors="pt")
        merge = int(self.vlm.image_processor.merge_size)
        rows: list[list[int]] = []
        for thw in vision["image_grid_thw"]:
            n_tokens = int(thw.prod()) // (merge * merge)
            text = self.prompt_text.replace(_IMAGE_PAD, _IMAGE_PAD * n_tokens)
            rows.append(list(self.vlm.tokenizer(text, add_special_tokens=False)["input_ids"]))
        length = max(len(row) for row in rows)
        # Left padding: every row's last prompt token sits at the same place, where the
        # generated tokens start.
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, length - len(row) :] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": vision["pixel_values"],
            "image_grid_thw": vision["image_grid_thw"],
            "mm_token_type_ids": (input_ids == self.image_token_id).to(torch.int32),
        }
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def _generate(self, images: Sequence[Image.Image]) -> list[str]:
        config = self.config
        generation = GenerationConfig(
            max_new_tokens=config.max_new_tokens,
            do_sample=config.do_sample,
            temperature=config.temperature if config.do_sample else None,
            top_p=config.top_p if config.do_sample else None,
            top_k=None,
            pad_token_id=self.pad_id,
            eos_token_id=self.end_id,
        )
        batch = self._inputs(images)
        model = self.vlm.model
        was_training = model.training
        model.eval()
        device = self.device
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(config.seed)
                output = model.generate(**batch, generation_config=generation)
        finally:
            model.train(was_training)
        new_tokens = cast(torch.Tensor, output)[:, batch["input_ids"].shape[1] :]
        texts = self.vlm.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [limit_words(text, config.max_words) for text in texts]

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        """One abstract caption (<= max_words words) per image."""
        keys = [image_key(image) for image in images]
        todo: dict[str, Image.Image] = {}
        for key, image in zip(keys, images, strict=True):
            if key not in self._cache and key not in todo:
                todo[key] = image
        pending = list(todo.items())
        step = max(1, self.config.batch_size)
        for start in range(0, len(pending), step):
            chunk = pending[start : start + step]
            texts = self._generate([image for _, image in chunk])
            for (key, _), text in zip(chunk, texts, strict=True):
                self._cache[key] = text
        return [self._cache[key] for key in keys]

    def cached_count(self) -> int:
        return len(self._cache)


class TextEncoder(Protocol):
    """Maps captions to float32 [N, D] unit rows."""

    name: str

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


class ClipTextEncoder:
    """CLIP's projected text features (truncated to its 77 positions), L2-normalised."""

    def __init__(self, clip: LoadedClip, *, batch_size: int = 64) -> None:
        if clip.tokenizer is None:
            raise ValueError(f"{clip.path} has no tokenizer; CLIP's text tower needs one")
        self.clip = clip
        self.tokenizer = clip.tokenizer
        self.name = "clip-text"
        self.batch_size = batch_size
        positions = clip.model.text_model.embeddings.position_embedding
        self.max_length = int(positions.num_embeddings)

    @property
    def dim(self) -> int:
        return int(self.clip.model.text_projection.out_features)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        chunks: list[NDArray[np.float32]] = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            output = self.clip.model.get_text_features(
                input_ids=tokens["input_ids"].to(self.clip.device),
                attention_mask=tokens["attention_mask"].to(self.clip.device),
            )
            features = cast(torch.Tensor, output.pooler_output).float()
            chunks.append(F.normalize(features, dim=-1).cpu().numpy())
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(chunks)


class MiniLMTextEncoder:
    """The frozen all-MiniLM-L6-v2 text tower relsim is trained against (384-d)."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
    ) -> None:
        from ml.vlm.text_tower import TextTower

        self.tower = TextTower(model_path, device=device)
        self.name = "minilm"

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return l2_normalise(self.tower.encode(list(texts)).numpy())


class CaptionTextEmbedder:
    """Image -> abstract caption -> text embedding, behind the common Embedder interface."""

    def __init__(self, captioner: AbstractCaptioner, encoder: TextEncoder, *, name: str) -> None:
        self.captioner = captioner
        self.encoder = encoder
        self.name = name

    def captions(self, images: Sequence[Image.Image]) -> list[str]:
        return self.captioner.caption(images)

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        return l2_normalise(self.encoder.encode(self.captions(images)))
