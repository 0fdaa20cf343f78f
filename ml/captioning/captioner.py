"""The anonymous captioner: Qwen2.5-VL (+ LoRA) that reads one image, or several images of one
group, and writes one anonymous caption."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress
from ml.captioning.postprocess import clean_caption
from ml.captioning.prompts import PROMPT_VERSION, get_prompt
from ml.vlm.tuned import IGNORE_INDEX, ChatSample, TunedKind, TunedVLM, VLMTuneConfig

CAPTIONER_CONFIG_FILE = "captioner_config.json"
CAPTIONER_FORMAT = "relsim-studio-captioner/1"


@dataclass
class CaptionerConfig(VLMTuneConfig):
    prompt_version: str = PROMPT_VERSION

    def validate(self) -> None:
        super().validate()
        get_prompt(self.prompt_version)


@dataclass(frozen=True)
class GenerationSettings:
    """How captions are drawn. `greedy` ignores temperature and top_p (for evaluation)."""

    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 128
    greedy: bool = False
    min_new_tokens: int = 0
    seed: int | None = None  # fixes the sampling stream when set


@dataclass(frozen=True)
class CaptionResult:
    """One drafted caption: the cleaned text, the raw text and what cleaning found."""

    text: str
    raw: str
    usable: bool
    fixes: list[str]
    problems: list[str]
    placeholders: list[str]
    prompt_version: str
    n_images: int
    finished: bool  # the model ended the caption itself (not cut at max_new_tokens)


class Captioner(TunedVLM):
    """Writes anonymous captions; forward(batch with labels) gives the caption loss."""

    config: CaptionerConfig

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        return caption_loss(self, batch)


def caption_loss(model: TunedVLM, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled (answer) positions only.

    Logits are computed for those positions alone: the vocabulary is 152k wide on the real
    model, so full-sequence logits would dwarf everything else in memory."""
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = model.core(**inputs, use_cache=False).last_hidden_state
    targets = labels[:, 1:].to(hidden.device)
    keep = targets != IGNORE_INDEX
    if not bool(keep.any()):
        raise ValueError("no labelled positions in the batch")
    logits = model.lm_head(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, targets[keep])


CAPTIONER = TunedKind(CaptionerConfig, Captioner, CAPTIONER_CONFIG_FILE, CAPTIONER_FORMAT)
build_captioner = CAPTIONER.build
save_captioner = CAPTIONER.save
load_captioner = CAPTIONER.load


def _stop_ids(captioner: Captioner) -> list[int]:
    # <|im_end|> ends the turn; the tokenizer's eos (<|endoftext|> on Qwen) stops as well.
    stops = [captioner.inputs.end_token_id]
    eos = captioner.tokenizer.eos_token_id
    if eos is not None and int(eos) not in stops:
        stops.append(int(eos))
    return stops


def _generation_kwargs(captioner: Captioner, settings: GenerationSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "min_new_tokens": settings.min_new_tokens,
        "eos_token_id": _stop_ids(captioner),
        "pad_token_id": captioner.inputs.pad_token_id,
        "do_sample": not settings.greedy,
    }
    if settings.greedy:
        # Unset, so the model's generation config cannot switch sampling filters back on.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    return kwargs


def _finish(captioner: Captioner, new_tokens: list[int], n_images: int) -> CaptionResult:
    stops = set(_stop_ids(captioner))
    finished = any(token in stops for token in new_tokens)
    if finished:
        new_tokens = new_tokens[: next(i for i, t in enumerate(new_tokens) if t in stops)]
    raw = str(captioner.tokenizer.decode(new_tokens, skip_special_tokens=True))
    cleaned = clean_caption(raw)
    problems = list(cleaned.problems)
    if not finished:
        problems.append("cut off at max_new_tokens")
    return CaptionResult(
        text=cleaned.text,
        raw=raw,
        usable=not problems,
        fixes=cleaned.fixes,
        problems=problems,
        placeholders=cleaned.placeholders,
        prompt_version=captioner.config.prompt_version,
        n_images=n_images,
        finished=finished,
    )


def caption_groups(
    captioner: Captioner,
    groups: Sequence[Sequence[Image.Image]],
    *,
    settings: GenerationSettings | None = None,
    batch_size: int = 8,
    preprocessed: bool = False,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> list[CaptionResult]:
    """One caption per group of images (a group of one is a single image), in order.

    Stopping early returns the captions of the batches finished so far."""
    settings = settings or GenerationSettings()
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    prompt = get_prompt(captioner.config.prompt_version)
    kwargs = _generation_kwargs(captioner, settings)
    results: list[CaptionResult] = []
    was_training = captioner.training
    captioner.eval()
    devices = [captioner.device] if captioner.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            for start in range(0, len(groups), batch_size):
                if should_stop():
                    break
                chunk = groups[start : start + batch_size]
                samples = [ChatSample(list(g), prompt.text(len(g))) for g in chunk]
                batch = captioner.to_device(
                    captioner.inputs(samples, padding_side="left", preprocessed=preprocessed)
                )
                output = captioner.model.generate(**batch, **kwargs)
                new = output[:, batch["input_ids"].shape[1] :].tolist()
                results += [
                    _finish(captioner, tokens, len(g)) for tokens, g in zip(new, chunk, strict=True)
                ]
                progress(len(results), len(groups), f"captioned {len(results)} of {len(groups)}")
    finally:
        captioner.train(was_training)
    return results


def caption_images(
    captioner: Captioner,
    images: Sequence[Image.Image],
    *,
    settings: GenerationSettings | None = None,
    batch_size: int = 8,
    preprocessed: bool = False,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> list[CaptionResult]:
    """One caption per image, in order (shorter when stopped early)."""
    return caption_groups(
        captioner,
        [[image] for image in images],
        settings=settings,
        batch_size=batch_size,
        preprocessed=preprocessed,
        progress=progress,
        should_stop=should_stop,
    )


def caption_group(
    captioner: Captioner,
    images: Sequence[Image.Image],
    *,
    settings: GenerationSettings | None = None,
    preprocessed: bool = False,
) -> CaptionResult:
    """One caption for a whole group, drafted from all its images in one prompt."""
    if not images:
        raise ValueError("a group needs at least one image")
    return caption_groups(captioner, [images], settings=settings, preprocessed=preprocessed)[0]
