"""The captioner and the interest filter on CUDA in bf16: inference matches float32 on the CPU
closely enough, and the training loop's automatic bf16 path trains and saves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ml.captioning.captioner import (
    CaptionerConfig,
    GenerationSettings,
    build_captioner,
    caption_groups,
    caption_loss,
    load_captioner,
)
from ml.captioning.captioner_training import train_captioner
from ml.captioning.interest_filter import FilterConfig, build_filter, score_images
from ml.vlm.tuned import ChatSample
from tests.ml.captioning.test_captioner_training import tiny_config, write_export
from tests.ml.conftest import TINY_IMAGE_SIZE, draw_image

# tests/ml/conftest.py skips `gpu` tests where there is no CUDA device.
pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path) -> Path:
    """Stands in for the suite-wide fixture, which needs Django's settings (absent on the GPU
    machine); these tests touch none."""
    return tmp_path


def test_bf16_caption_loss_and_drafting_on_cuda_follow_float32(tiny_backbone: Path) -> None:
    config = CaptionerConfig(backbone=str(tiny_backbone), image_size=TINY_IMAGE_SIZE)
    reference = build_captioner(config)
    fast = build_captioner(config, dtype=torch.bfloat16, device="cuda")
    sample = ChatSample([draw_image(0), draw_image(1)], "Describe.", "A {Object} on a {Object}.")
    batch = reference.inputs([sample], padding_side="right")
    with torch.no_grad():
        expected = caption_loss(reference, batch)
        got = caption_loss(fast, fast.to_device(batch))
    assert got.dtype == torch.float32
    assert abs(float(got) - float(expected)) < 0.05 * float(expected)
    settings = GenerationSettings(greedy=True, max_new_tokens=6, min_new_tokens=6)
    groups = [[draw_image(2)], [draw_image(3), draw_image(4), draw_image(5)]]
    results = caption_groups(fast, groups, settings=settings)
    assert [r.n_images for r in results] == [1, 3]
    assert all(r.raw for r in results)


def test_filter_scores_on_cuda_match_the_cpu(tiny_backbone: Path) -> None:
    config = FilterConfig(backbone=str(tiny_backbone), image_size=TINY_IMAGE_SIZE)
    images = [draw_image(i) for i in range(4)]
    cpu = score_images(build_filter(config), images)
    cuda32 = score_images(build_filter(config, device="cuda"), images)
    cuda16 = score_images(build_filter(config, dtype=torch.bfloat16, device="cuda"), images)
    assert cuda32 == pytest.approx(cpu, abs=1e-3)
    assert cuda16 == pytest.approx(cpu, abs=0.05)


def test_captioner_training_uses_bf16_on_cuda_and_saves_a_checkpoint_the_cpu_loads(
    tmp_path: Path, tiny_backbone: Path
) -> None:
    data = write_export(tmp_path / "export")
    config = tiny_config(data, tmp_path / "run", tiny_backbone, finetune="lora", max_steps=4)
    config.lr = 2e-2
    assert config.resolved_precision() == "bf16"
    result = train_captioner(config)
    assert result.checkpoint is not None
    losses = [json.loads(line)["loss"] for line in result.metrics_path.open()]
    assert losses[-1] < losses[0]
    loaded = load_captioner(result.checkpoint)
    settings = GenerationSettings(greedy=True, max_new_tokens=4, min_new_tokens=4)
    assert caption_groups(loaded, [[draw_image(0)]], settings=settings)[0].raw
