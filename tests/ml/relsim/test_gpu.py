from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image
from torch.nn import functional as F

from ml.relsim.model import RelsimConfig, build_relsim_model
from ml.vlm.vision_speedups import (
    VisionFeatureCache,
    compute_image_features,
    frozen_vision_embeddings,
    gather_token_states,
    language_hidden_states,
    multimodal_token_types,
    patch_vision_attention,
    unpatch_vision_attention,
)
from tests.ml.vlm.test_vision_speedups import MIXED_GRIDS, QUERY, prompts, random_patches, tiny_vlm

# tests/ml/conftest.py skips `gpu` tests where there is no CUDA device.
pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path) -> Path:
    """Stands in for the suite-wide fixture of this name, which needs Django's settings: these
    tests touch none, and must also run where Django is not installed (the GPU machine)."""
    return tmp_path


CUDA = torch.device("cuda")


def bf16_vlm() -> torch.nn.Module:
    return tiny_vlm().to(CUDA, torch.bfloat16)


def test_patched_vision_attention_matches_the_window_loop_in_bf16_on_cuda() -> None:
    model = bf16_vlm()
    pixels, grid_thw = random_patches(MIXED_GRIDS)
    pixels, grid_thw = pixels.to(CUDA, torch.bfloat16), grid_thw.to(CUDA)
    with torch.no_grad():
        looped = model.model.visual(pixels, grid_thw=grid_thw).pooler_output.float()
        patch_vision_attention(model)
        batched = model.model.visual(pixels, grid_thw=grid_thw).pooler_output.float()
    scale = looped.abs().max()
    assert torch.isfinite(batched).all()
    # bf16 keeps ~3 significant digits; different kernels may round differently.
    assert (batched - looped).abs().max() <= 2e-2 * scale
    unpatch_vision_attention(model)


def test_tiny_relsim_step_trains_lora_and_head_in_bf16_on_cuda() -> None:
    base = bf16_vlm()
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    patch_vision_attention(model)
    head = torch.nn.Linear(48, 16, device=CUDA)
    lora = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([*lora, *head.parameters()], lr=1e-3)
    pixels, grid_thw = random_patches([[1, 8, 8], [1, 8, 8], [1, 4, 12], [1, 6, 10]])
    input_ids, mask = prompts(grid_thw)
    pixels, grid_thw = pixels.to(CUDA, torch.bfloat16), grid_thw.to(CUDA)
    input_ids, mask = input_ids.to(CUDA), mask.to(CUDA)
    text = F.normalize(torch.randn(4, 16, device=CUDA), dim=-1)
    cache = VisionFeatureCache(store_device=CUDA)
    before = [p.detach().clone() for p in lora]
    losses = []
    for _ in range(3):
        features = cache.get_or_compute(model, ["a", "b", "c", "d"], pixels, grid_thw)
        hidden = language_hidden_states(model, input_ids, mask, grid_thw, features)
        states = gather_token_states(hidden, input_ids, QUERY)
        image = F.normalize(head(states.float()), dim=-1)
        loss = F.cross_entropy(image @ text.T / 0.07, torch.arange(4, device=CUDA))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert cache.misses == 4 and cache.hits == 8
    assert any(not torch.equal(b, p) for b, p in zip(before, lora, strict=True))
    assert losses[-1] < losses[0]


def test_embeddings_are_unit_norm_and_match_the_plain_path_on_cuda() -> None:
    model = bf16_vlm()
    head = torch.nn.Linear(48, 16, device=CUDA)
    pixels, grid_thw = random_patches([[1, 8, 8], [1, 4, 12], [1, 6, 10]])
    input_ids, mask = prompts(grid_thw)
    pixels, grid_thw = pixels.to(CUDA, torch.bfloat16), grid_thw.to(CUDA)
    input_ids, mask = input_ids.to(CUDA), mask.to(CUDA)
    with torch.no_grad():
        plain_hidden = model.model(
            input_ids=input_ids,
            attention_mask=mask,
            pixel_values=pixels,
            image_grid_thw=grid_thw,
            mm_token_type_ids=multimodal_token_types(input_ids, model.config),
        ).last_hidden_state
        plain = F.normalize(
            head(gather_token_states(plain_hidden, input_ids, QUERY).float()), dim=-1
        )
        patch_vision_attention(model)
        features = compute_image_features(model, pixels, grid_thw)
        hidden = language_hidden_states(model, input_ids, mask, grid_thw, features)
        fast = F.normalize(head(gather_token_states(hidden, input_ids, QUERY).float()), dim=-1)
    torch.testing.assert_close(fast.norm(dim=-1), torch.ones(3, device=CUDA))
    assert (fast * plain).sum(-1).min() > 0.99


def test_project_relsim_model_trains_in_bf16_on_cuda_with_the_frozen_vision_path(
    tiny_backbone: Path, images: list[Image.Image]
) -> None:
    model = build_relsim_model(
        RelsimConfig(backbone=str(tiny_backbone), image_size=56),
        dtype=torch.bfloat16,
        device=CUDA,
        seed=0,
    )
    patch_vision_attention(model)
    batch = model.encode(images)
    text = F.normalize(torch.randn(len(images), 384, device=CUDA), dim=-1)
    params = [p for _, p in model.trainable_named_parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    with torch.no_grad():
        plain = model(**batch)
    fast = frozen_vision_embeddings(model, batch)
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast.norm(dim=-1), torch.ones(len(images), device=CUDA))
    assert (fast * plain).sum(-1).min() > 0.99
    loss = F.cross_entropy(fast @ text.T / 0.07, torch.arange(len(images), device=CUDA))
    loss.backward()
    trained = [p for p in params if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(trained) >= len(params) // 2
    before = [p.detach().clone() for p in params]
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, params, strict=True))
