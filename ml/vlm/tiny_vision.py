"""Tiny, randomly initialised CLIP and DINOv2 folders (real transformers architectures, config +
weights + PIL image processor, and a tiny BPE tokenizer for CLIP) for tests and CPU demos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer, Dinov2Config, Dinov2Model
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from ml.vlm.backbone import quiet_transformers

__all__ = ["CLIP_TEXT_LENGTH", "build_tiny_clip", "build_tiny_dinov2"]

# CLIP's text tower has 77 positions; the real tokenizer truncates to this.
CLIP_TEXT_LENGTH = 77
_CLIP_BOS = "<|startoftext|>"
_CLIP_EOS = "<|endoftext|>"
_END_OF_WORD = "</w>"
# CLIP's pre-tokenizer split (words, single digits, runs of punctuation), rebuilt so that the
# tiny tokenizer's merges are learnt on the same pieces CLIPTokenizer will later feed them.
_CLIP_SPLIT = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|"""
    r"""[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)
_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_STD = [0.229, 0.224, 0.225]

# Text the tiny tokenizer's merges are learnt from: abstract-caption phrasing.
_TOKENIZER_CORPUS = (
    "a photo of a cat",
    "several objects arranged in a ring around an empty centre",
    "one object differs from the others; the rest repeat the same shape",
    "shapes stacked on top of each other from the largest to the smallest",
    "two groups of objects mirrored across a line",
    "a {Object} inside a larger {Object}, nested like layers",
    "items sorted by size in a row, growing from left to right",
    "the layers of a {Object} seen in cross section",
    "a pattern that repeats along a line with one gap",
)


def _train_clip_tokenizer(vocab_size: int) -> CLIPTokenizer:
    bpe = Tokenizer(models.BPE(end_of_word_suffix=_END_OF_WORD))
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=alphabet,
        end_of_word_suffix=_END_OF_WORD,
        show_progress=False,
    )
    bpe.train_from_iterator(list(_TOKENIZER_CORPUS) * 4, trainer)
    model_json = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model_json["vocab"])
    # Every byte must be a token both inside and at the end of a word, as in CLIP's own
    # vocabulary: an unknown piece would become <|endoftext|>, where CLIP pools its text.
    for char in sorted(alphabet):
        for piece in (char, char + _END_OF_WORD):
            vocab.setdefault(piece, len(vocab))
    # CLIP keeps its two special tokens at the very end of the vocabulary.
    vocab[_CLIP_BOS] = len(vocab)
    vocab[_CLIP_EOS] = len(vocab)
    merges: Any = [
        tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]
    ]
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    tokenizer.model_max_length = CLIP_TEXT_LENGTH
    return tokenizer


def build_tiny_clip(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    projection_dim: int = 32,
    image_size: int = 56,
    patch_size: int = 14,
    tokenizer_vocab_size: int = 700,
) -> Path:
    """Write a randomly initialised CLIPModel (both towers) with a tiny CLIP tokenizer and the
    PIL image processor. The same seed gives the same weights; `load_clip` reads it back."""
    if image_size % patch_size:
        raise ValueError("image_size must be a multiple of patch_size")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_clip_tokenizer(tokenizer_vocab_size)
    vocab = tokenizer.get_vocab()
    eos_id, bos_id = int(vocab[_CLIP_EOS]), int(vocab[_CLIP_BOS])
    tower: dict[str, Any] = {
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "projection_dim": projection_dim,
    }
    config = CLIPConfig(
        text_config={
            **tower,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": CLIP_TEXT_LENGTH,
            "bos_token_id": bos_id,
            "eos_token_id": eos_id,
            "pad_token_id": eos_id,
        },
        vision_config={**tower, "image_size": image_size, "patch_size": patch_size},
        projection_dim=projection_dim,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    with quiet_transformers():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_dinov2(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    image_size: int = 56,
    patch_size: int = 14,
) -> Path:
    """Write a randomly initialised Dinov2Model with the PIL image processor set up as
    dinov2-large's is (resize the short side to 8/7 of the crop, centre crop, ImageNet
    normalisation). The same seed gives the same weights; `load_dinov2` reads it back."""
    if image_size % patch_size:
        raise ValueError("image_size must be a multiple of patch_size")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = Dinov2Config(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        image_size=image_size,
        patch_size=patch_size,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Dinov2Model(config)
    processor = BitImageProcessorPil(
        size={"shortest_edge": round(image_size * 256 / 224)},
        crop_size={"height": image_size, "width": image_size},
        image_mean=_IMAGENET_MEAN,
        image_std=_IMAGENET_STD,
    )
    with quiet_transformers():
        model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
