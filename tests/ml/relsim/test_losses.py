from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ml.relsim.losses import ContrastiveLoss, unique_captions


def _unit(*rows: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_unique_captions_keep_first_seen_order() -> None:
    captions, targets = unique_captions(["b", "a", "b", "c", "a"])
    assert captions == ["b", "a", "c"]
    assert targets.tolist() == [0, 1, 0, 2, 1]


def test_loss_matches_a_hand_computed_case_with_a_shared_caption() -> None:
    # Images 0 and 1 share caption A; image 2 has caption B. Two unique text columns.
    images = _unit([1.0, 0.0], [0.6, 0.8], [0.0, 1.0])
    texts = _unit([1.0, 0.0], [0.0, 1.0])
    targets = torch.tensor([0, 0, 1])
    t = 0.5
    # Similarities: img0 (1, 0), img1 (0.6, 0.8), img2 (0, 1); logits = s / t.
    expected_i2t = (
        -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(0.0)))
        - math.log(math.exp(1.2) / (math.exp(1.2) + math.exp(1.6)))
        - math.log(math.exp(2.0) / (math.exp(0.0) + math.exp(2.0)))
    ) / 3
    loss = ContrastiveLoss(t)(images, texts, targets)
    assert loss.item() == pytest.approx(expected_i2t, rel=1e-5)
    # Text A's positives are images 0 and 1 together; text B's is image 2.
    a_all = math.exp(2.0) + math.exp(1.2) + math.exp(0.0)
    b_all = math.exp(0.0) + math.exp(1.6) + math.exp(2.0)
    expected_t2i = (
        -math.log((math.exp(2.0) + math.exp(1.2)) / a_all) - math.log(math.exp(2.0) / b_all)
    ) / 2
    symmetric = ContrastiveLoss(t, symmetric=True)(images, texts, targets)
    assert symmetric.item() == pytest.approx((expected_i2t + expected_t2i) / 2, rel=1e-5)


def test_a_shared_caption_is_never_a_negative() -> None:
    # Two images with the same caption and identical embeddings: a loss that counted the
    # duplicate caption column as a negative could not go below log(2).
    images = _unit([1.0, 0.0], [1.0, 0.0])
    texts = _unit([1.0, 0.0])
    loss = ContrastiveLoss(0.01)(images, texts, torch.tensor([0, 0]))
    assert loss.item() < 1e-6


def test_without_repeats_it_is_the_released_loss() -> None:
    torch.manual_seed(0)
    images = F.normalize(torch.randn(5, 8), dim=1)
    texts = F.normalize(torch.randn(5, 8), dim=1)
    released = F.cross_entropy(images @ texts.T / 0.07, torch.arange(5))
    ours = ContrastiveLoss()(images, texts, torch.arange(5))
    assert ours.item() == pytest.approx(released.item(), rel=1e-6)


def test_fixed_temperature_has_no_parameter_and_learnable_one_gets_gradients() -> None:
    assert list(ContrastiveLoss(0.07).parameters()) == []
    learnable = ContrastiveLoss(0.07, learnable=True)
    images = _unit([1.0, 0.0], [0.0, 1.0])
    learnable(images, images.flip(0), torch.tensor([0, 1])).backward()
    (param,) = learnable.parameters()
    assert param.grad is not None and param.grad.abs().item() > 0
    assert learnable.temperature == pytest.approx(0.07)
