"""The captioner's and the filter's trainers learn: scored on freshly drawn held-out images, the
untrained model fails and the trained one passes by a margin."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ml.captioning import (
    PROMPT_VERSION,
    Captioner,
    CaptionerTrainConfig,
    FilterTrainConfig,
    InterestFilter,
    SyntheticCaptionSamples,
    SyntheticFilterSamples,
    build_captioner,
    build_filter,
    caption_loss,
    get_prompt,
    load_captioner,
    load_filter,
    score_images,
    train_captioner,
    train_filter,
)
from tests.ml.conftest import TINY_IMAGE_SIZE

pytestmark = pytest.mark.slow


@torch.no_grad()
def _held_out_caption_loss(captioner: Captioner) -> float:
    held_out = SyntheticCaptionSamples(
        20,
        prompt=get_prompt(PROMPT_VERSION),
        image_size=TINY_IMAGE_SIZE,
        group_share=0.0,
        seed=1,
        split="test",
    )
    samples = [held_out[(0, index)] for index in range(len(held_out))]
    captioner.eval()
    batch = captioner.inputs(samples, padding_side="right", preprocessed=True)
    return float(caption_loss(captioner, batch))


def test_the_captioner_trains_to_write_held_out_captions(
    learnable_backbone: Path, tmp_path: Path
) -> None:
    config = CaptionerTrainConfig(
        output_dir=str(tmp_path / "run"),
        backbone=str(learnable_backbone),
        image_size=TINY_IMAGE_SIZE,
        finetune="full",
        freeze_vision=False,
        synthetic_train_samples=240,
        synthetic_group_share=0.0,
        batch_size=8,
        epochs=1,  # 30 steps
        lr=5e-3,
        warmup_steps=2,
        save_every=1000,
    )
    untrained = _held_out_caption_loss(build_captioner(config.model_config(), seed=config.seed))
    result = train_captioner(config)
    assert result.checkpoint is not None
    trained = _held_out_caption_loss(load_captioner(result.checkpoint))
    # Next-token loss on captions of images never seen: about ln(vocabulary) untrained.
    assert untrained > 5.0
    assert trained < 0.6 * untrained, (untrained, trained)


def _held_out_filter_loss(model: InterestFilter) -> float:
    """Mean cross-entropy of P(yes) on held-out images, 1 relational to 4 clutter."""
    held_out = SyntheticFilterSamples(
        60, prompt="-", image_size=TINY_IMAGE_SIZE, seed=1, split="test"
    )
    labels = held_out.labels
    images = [held_out[(0, index)][0].images[0] for index in range(len(held_out))]
    scores = score_images(model, images, preprocessed=True)
    return sum(
        -math.log(max(1e-9, score if label else 1.0 - score))
        for score, label in zip(scores, labels, strict=True)
    ) / len(scores)


def test_the_filter_trains_to_the_held_out_odds(learnable_backbone: Path, tmp_path: Path) -> None:
    config = FilterTrainConfig(
        output_dir=str(tmp_path / "run"),
        backbone=str(learnable_backbone),
        image_size=TINY_IMAGE_SIZE,
        finetune="full",
        freeze_vision=False,
        synthetic_train_images=240,
        synthetic_clutter_per_relational=4,
        # Unweighted, so the loss rewards the true odds; a tiny model learns those in seconds,
        # not yet what makes an image relational.
        imbalance="none",
        batch_size=16,
        epochs=1,  # 15 steps
        lr=1e-3,
        warmup_steps=2,
        save_every=1000,
    )
    untrained = _held_out_filter_loss(build_filter(config.model_config(), seed=config.seed))
    result = train_filter(config)
    assert result.checkpoint is not None
    trained = _held_out_filter_loss(load_filter(result.checkpoint))
    # The entropy of 1:4 odds is 0.500: no model that ignores the image does better.
    assert untrained > 0.55
    assert trained < 0.53 and trained < untrained - 0.05, (untrained, trained)
