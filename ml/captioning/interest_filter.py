"""The relational-interest filter: Qwen2.5-VL (+ LoRA) asked whether an image is relationally
interesting; its score is P("Yes") against P("No") as the next token. Also threshold choice
(for a keep-rate or a precision) and ROC AUC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from peft import PeftModel
from PIL import Image
from transformers import PreTrainedTokenizerBase, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress
from ml.vlm.tuned import ChatSample, TunedKind, TunedVLM, VLMTuneConfig

FILTER_PROMPT_VERSION = "interest/v1"
FILTER_CONFIG_FILE = "interest_filter_config.json"
FILTER_FORMAT = "relsim-studio-interest-filter/1"
NO, YES = 0, 1  # class indices of the two-way logits


@dataclass(frozen=True)
class FilterPrompt:
    version: str
    text: str
    yes: str  # the reply words whose first tokens are compared
    no: str


FILTER_PROMPTS: dict[str, FilterPrompt] = {
    FILTER_PROMPT_VERSION: FilterPrompt(
        version=FILTER_PROMPT_VERSION,
        text=(
            "Does this image carry an idea beyond the things in it - a relation, structure, "
            "process, pun or analogy that a quite different-looking image could share? "
            "Answer with one word: Yes or No."
        ),
        yes="Yes",
        no="No",
    ),
}


def get_filter_prompt(version: str = FILTER_PROMPT_VERSION) -> FilterPrompt:
    try:
        return FILTER_PROMPTS[version]
    except KeyError:
        known = ", ".join(sorted(FILTER_PROMPTS))
        raise ValueError(f"unknown filter prompt version {version!r}; known: {known}") from None


@dataclass
class FilterConfig(VLMTuneConfig):
    prompt_version: str = FILTER_PROMPT_VERSION

    def validate(self) -> None:
        super().validate()
        get_filter_prompt(self.prompt_version)


def answer_token_ids(tokenizer: PreTrainedTokenizerBase, prompt: FilterPrompt) -> tuple[int, int]:
    """(no, yes) ids: the first token of each reply word. On Qwen's tokenizer each word is one
    token; a small tokenizer may split them, and the first pieces must still differ."""
    ids = []
    for word in (prompt.no, prompt.yes):
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not pieces:
            raise ValueError(f"the tokenizer turns {word!r} into no tokens")
        ids.append(int(pieces[0]))
    if ids[0] == ids[1]:
        raise ValueError(f"{prompt.yes!r} and {prompt.no!r} start with the same token")
    return ids[0], ids[1]


class InterestFilter(TunedVLM):
    """forward(batch) gives float32 logits [batch, 2] over (No, Yes) for the next token."""

    config: FilterConfig

    def __init__(
        self,
        config: FilterConfig,
        backbone: Qwen2_5_VLForConditionalGeneration | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: Qwen2VLImageProcessorPil,
    ) -> None:
        super().__init__(config, backbone, tokenizer, image_processor)
        self.prompt = get_filter_prompt(config.prompt_version)
        self.no_token_id, self.yes_token_id = answer_token_ids(tokenizer, self.prompt)

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        hidden = self.core(**batch, use_cache=False).last_hidden_state
        # Inputs are left-padded, so the last position is every row's next-token position.
        last = hidden[:, -1]
        logits: torch.Tensor = self.lm_head(last).float()
        return logits[:, [self.no_token_id, self.yes_token_id]]

    def samples(self, images: Sequence[Image.Image]) -> list[ChatSample]:
        return [ChatSample([image], self.prompt.text) for image in images]


def interest_loss(
    logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over (No, Yes); with weights it is the weighted mean over the batch."""
    return F.cross_entropy(logits.float(), labels.to(logits.device), weight=class_weights)


FILTER = TunedKind(FilterConfig, InterestFilter, FILTER_CONFIG_FILE, FILTER_FORMAT)
build_filter = FILTER.build
save_filter = FILTER.save
load_filter = FILTER.load


def score_images(
    model: InterestFilter,
    images: Sequence[Image.Image],
    *,
    batch_size: int = 16,
    preprocessed: bool = False,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> list[float]:
    """P(Yes) in [0, 1] for each image, in order (shorter when stopped early)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    scores: list[float] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                if should_stop():
                    break
                samples = model.samples(images[start : start + batch_size])
                batch = model.to_device(
                    model.inputs(samples, padding_side="left", preprocessed=preprocessed)
                )
                probabilities = torch.softmax(model(**batch), dim=-1)[:, YES]
                scores += probabilities.cpu().tolist()
                progress(len(scores), len(images), f"scored {len(scores)} of {len(images)}")
    finally:
        model.train(was_training)
    return scores


# ---------------------------------------------------------------------------------------------
# Thresholds and metrics


@dataclass(frozen=True)
class ThresholdChoice:
    """Keep an image when its score >= threshold; figures are measured on the given scores."""

    threshold: float
    keep_rate: float
    met: bool  # the target was reached (keep-rate within tolerance, or precision >= target)
    target: str  # "keep_rate=0.1" or "min_precision=0.9"
    precision: float | None = None  # with labels only
    recall: float | None = None


def _as_labels(labels: ArrayLike, n: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    array = np.asarray(labels)
    if array.shape != (n,):
        raise ValueError(f"labels must have one entry per score ({n}), got shape {array.shape}")
    if array.dtype.kind in "US":
        lowered = np.char.lower(array.astype(str))
        if not np.isin(lowered, ["yes", "no"]).all():
            raise ValueError("string labels must be 'yes' or 'no'")
        return np.asarray(lowered == "yes")
    return np.asarray(array.astype(bool))


def choose_threshold(
    scores: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    keep_rate: float | None = None,
    min_precision: float | None = None,
    tolerance: float = 0.02,
) -> ThresholdChoice:
    """A threshold for a target keep-rate (the achievable rate nearest to it; `met` when within
    `tolerance`) or for a target precision (the lowest threshold reaching it, i.e. the most
    recall; needs labels). Thresholds fall halfway between neighbouring scores."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no scores")
    if not np.isfinite(values).all():
        raise ValueError("scores must be finite")
    if (keep_rate is None) == (min_precision is None):
        raise ValueError("give exactly one of keep_rate and min_precision")
    positive = _as_labels(labels, values.size) if labels is not None else None

    # Candidate t_i keeps every score >= the i-th largest distinct value; cutting between
    # distinct values is the only freedom a threshold has.
    distinct = np.unique(values)[::-1]
    kept = np.array([(values >= v).sum() for v in distinct], dtype=np.float64)
    rates = kept / values.size
    below = np.append(distinct[1:], -np.inf)
    cuts = np.where(np.isfinite(below), (distinct + below) / 2, distinct)
    if positive is not None:
        true_kept = np.array([positive[values >= v].sum() for v in distinct], dtype=np.float64)
        precisions = true_kept / kept
        recalls = true_kept / max(1, int(positive.sum()))

    if keep_rate is not None:
        if not 0.0 <= keep_rate <= 1.0:
            raise ValueError("keep_rate must lie in [0, 1]")
        # Keeping nothing is a candidate too: a threshold above every score.
        all_rates = np.append(rates, 0.0)
        index = int(np.argmin(np.abs(all_rates - keep_rate)))
        met = bool(abs(all_rates[index] - keep_rate) <= tolerance + 1e-12)
        target = f"keep_rate={keep_rate:g}"
        if index == distinct.size:
            return ThresholdChoice(
                float(np.nextafter(distinct[0], np.inf)),
                0.0,
                met,
                target,
                None if positive is None else 0.0,
                None if positive is None else 0.0,
            )
    else:
        assert min_precision is not None
        if positive is None:
            raise ValueError("min_precision needs labels")
        if not 0.0 <= min_precision <= 1.0:
            raise ValueError("min_precision must lie in [0, 1]")
        reaching = np.flatnonzero(precisions >= min_precision - 1e-12)
        met = reaching.size > 0
        target = f"min_precision={min_precision:g}"
        if met:
            index = int(reaching[-1])  # the lowest threshold that still reaches it
        else:
            best = precisions.max()
            index = int(np.flatnonzero(precisions == best)[-1])
    return ThresholdChoice(
        threshold=float(cuts[index]),
        keep_rate=float(rates[index]),
        met=met,
        target=target,
        precision=None if positive is None else float(precisions[index]),
        recall=None if positive is None else float(recalls[index]),
    )


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve: P(a random positive outscores a random negative), ties 1/2."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    positive = _as_labels(labels, values.size)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both positive and negative labels")
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    # Average ranks over ties (Mann-Whitney U).
    start = 0
    while start < values.size:
        end = start
        while end + 1 < values.size and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))
