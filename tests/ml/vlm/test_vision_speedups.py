from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.nn import functional as F
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from ml.relsim.model import RelsimConfig, RelsimModel, build_relsim_model
from ml.vlm.vision_speedups import (
    VisionFeatureCache,
    batched_segment_attention,
    compute_image_features,
    frozen_vision_embeddings,
    gather_token_states,
    is_vision_attention_patched,
    language_hidden_states,
    multimodal_token_types,
    patch_vision_attention,
    unpatch_vision_attention,
)

IMAGE, VIDEO, START, END, QUERY = 290, 291, 292, 293, 294
PATCH_DIM = 3 * 2 * 14 * 14


def tiny_config() -> Qwen2_5_VLConfig:
    # Window 112 px / patch 14 / merge 2 = 4x4 merged tokens per window, as in the 7B model.
    return Qwen2_5_VLConfig(
        vision_config={
            "depth": 4,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 48,
            "fullatt_block_indexes": [1, 3],
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        text_config={
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 300,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 2, 2],
            },
        },
        image_token_id=IMAGE,
        video_token_id=VIDEO,
        vision_start_token_id=START,
        vision_end_token_id=END,
    )


def tiny_vlm(seed: int = 0) -> Qwen2_5_VLForConditionalGeneration:
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(tiny_config()).eval()
    model.model.visual.requires_grad_(False)
    return model


def random_patches(grids: list[list[int]], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    grid_thw = torch.tensor(grids)
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(int(grid_thw.prod(-1).sum()), PATCH_DIM, generator=generator)
    return pixels, grid_thw


def prompts(grid_thw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded rows: text, the image placeholders, then the query token."""
    tokens = (grid_thw.prod(-1) // 4).tolist()
    rows = [[5, START, *[IMAGE] * n, END, 7, QUERY] for n in tokens]
    width = max(len(r) for r in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return input_ids, mask


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path) -> Path:
    """Stands in for the suite-wide fixture of this name, which needs Django's settings: these
    tests touch none, and must also run where Django is not installed (the GPU machine)."""
    return tmp_path


# Sizes whose windows are not all full: edge windows of 12, 16, 32 and 48 patches appear.
MIXED_GRIDS = [[1, 16, 16], [1, 12, 20], [1, 6, 10], [1, 16, 16], [1, 2, 2]]


def test_batched_segment_attention_matches_one_call_per_segment() -> None:
    generator = torch.Generator().manual_seed(0)
    lengths = [64, 32, 64, 5, 64, 32, 1]
    cu_seqlens = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    q, k, v = (torch.randn(sum(lengths), 3, 8, generator=generator) for _ in range(3))
    expected = torch.cat(
        [
            F.scaled_dot_product_attention(
                q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1), scale=0.3
            ).transpose(0, 1)
            for s, e in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist(), strict=True)
        ]
    )
    got = batched_segment_attention(q, k, v, cu_seqlens, scale=0.3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_patched_vision_tower_gives_the_same_features_for_images_of_different_sizes() -> None:
    model = tiny_vlm()
    pixels, grid_thw = random_patches(MIXED_GRIDS)
    with torch.no_grad():
        expected = model.model.visual(pixels, grid_thw=grid_thw).pooler_output
        assert patch_vision_attention(model) == 4
        got = model.model.visual(pixels, grid_thw=grid_thw).pooler_output
    assert got.shape == (int(grid_thw.prod(-1).sum()) // 4, 48)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_patched_attention_actually_replaces_the_per_window_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    original = F.scaled_dot_product_attention

    def counting_sdpa(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    model = tiny_vlm()
    pixels, grid_thw = random_patches([[1, 16, 16]] * 3)
    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    with torch.no_grad():
        model.model.visual(pixels, grid_thw=grid_thw)
        unpatched_calls = len(calls)
        calls.clear()
        patch_vision_attention(model)
        model.model.visual(pixels, grid_thw=grid_thw)
    # 16x16 patches = 8x8 merged tokens = 4 windows of 4x4 per image.
    # Before: 2 window blocks x 12 windows + 2 full blocks x 3 images; after: one call a block.
    assert unpatched_calls == 2 * 12 + 2 * 3
    assert len(calls) == 4


def test_patched_attention_passes_the_same_gradients_back() -> None:
    model = tiny_vlm()
    pixels, grid_thw = random_patches([[1, 8, 12], [1, 6, 6]])
    grads = []
    for patched in (False, True):
        if patched:
            patch_vision_attention(model)
        leaf = pixels.clone().requires_grad_(True)
        model.model.visual(leaf, grid_thw=grid_thw).pooler_output.square().sum().backward()
        assert leaf.grad is not None
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_patching_is_idempotent_and_reversible() -> None:
    model = tiny_vlm()
    pixels, grid_thw = random_patches([[1, 12, 20]])
    with torch.no_grad():
        before = model.model.visual(pixels, grid_thw=grid_thw).pooler_output
        assert patch_vision_attention(model) == 4
        assert patch_vision_attention(model) == 0
        assert is_vision_attention_patched(model)
        assert unpatch_vision_attention(model) == 4
        assert not is_vision_attention_patched(model)
        after = model.model.visual(pixels, grid_thw=grid_thw).pooler_output
    assert torch.equal(before, after)


def test_frozen_vision_path_gives_the_plain_forwards_hidden_states() -> None:
    model = tiny_vlm()
    pixels, grid_thw = random_patches([[1, 8, 8], [1, 4, 12], [1, 6, 10]])
    input_ids, mask = prompts(grid_thw)
    with torch.no_grad():
        expected = model.model(
            input_ids=input_ids,
            attention_mask=mask,
            pixel_values=pixels,
            image_grid_thw=grid_thw,
            mm_token_type_ids=multimodal_token_types(input_ids, model.config),
        ).last_hidden_state
    features = compute_image_features(model, pixels, grid_thw)
    got = language_hidden_states(model, input_ids, mask, grid_thw, features)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    query_states = gather_token_states(got, input_ids, QUERY)
    torch.testing.assert_close(query_states, expected[:, -1])


def test_frozen_vision_path_runs_the_vision_tower_outside_autograd() -> None:
    model = tiny_vlm()
    grad_enabled_in_vision: list[bool] = []
    model.model.visual.register_forward_hook(
        lambda *_: grad_enabled_in_vision.append(torch.is_grad_enabled())
    )
    head = torch.nn.Linear(48, 8)
    pixels, grid_thw = random_patches([[1, 8, 8], [1, 8, 8]])
    input_ids, mask = prompts(grid_thw)
    features = compute_image_features(model, pixels, grid_thw)
    hidden = language_hidden_states(model, input_ids, mask, grid_thw, features)
    head(gather_token_states(hidden, input_ids, QUERY)).sum().backward()
    assert grad_enabled_in_vision == [False]
    assert not any(f.requires_grad for f in features)
    assert head.weight.grad is not None


def test_it_refuses_no_grad_features_when_the_vision_tower_is_trainable() -> None:
    model = tiny_vlm()
    model.model.visual.merger.requires_grad_(True)
    pixels, grid_thw = random_patches([[1, 4, 4]])
    with pytest.raises(ValueError, match="trainable"):
        compute_image_features(model, pixels, grid_thw)


def test_feature_cache_runs_the_vision_tower_only_for_new_images(tmp_path: Path) -> None:
    model = tiny_vlm()
    runs: list[int] = []
    model.model.visual.register_forward_hook(lambda _m, args, _o: runs.append(len(args[0])))
    pixels, grid_thw = random_patches([[1, 8, 8], [1, 4, 12]])
    cache = VisionFeatureCache(tmp_path)
    first = cache.get_or_compute(model, ["a", "b"], pixels, grid_thw)
    second = cache.get_or_compute(model, ["a", "b"], pixels, grid_thw)
    assert runs == [64 + 48]
    assert (cache.hits, cache.misses) == (2, 2)
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x, y)
    # A second cache on the same folder (the next epoch, another process) reads the files.
    reloaded = VisionFeatureCache(tmp_path).get_or_compute(model, ["a", "b"], pixels, grid_thw)
    assert runs == [64 + 48]
    torch.testing.assert_close(reloaded, first)
    # Only the image that is new in this batch goes through the tower.
    more_pixels, more_grid = random_patches([[1, 4, 12], [1, 4, 4]], seed=5)
    mixed = cache.get_or_compute(model, ["b", "c"], more_pixels, more_grid)
    assert runs == [64 + 48, 16]
    assert torch.equal(mixed[0], first[1])
    torch.testing.assert_close(
        mixed[1], compute_image_features(model, more_pixels[48:], more_grid[1:])[0]
    )


def test_feature_cache_keeps_one_image_at_two_resolutions_apart() -> None:
    model = tiny_vlm()
    cache = VisionFeatureCache()
    small = cache.get_or_compute(model, ["a"], *random_patches([[1, 4, 4]]))
    large = cache.get_or_compute(model, ["a"], *random_patches([[1, 8, 8]]))
    assert small[0].shape[0] == 4
    assert large[0].shape[0] == 16
    assert cache.misses == 2


def test_feature_cache_forgets_the_oldest_images_beyond_its_memory_limit() -> None:
    model = tiny_vlm()
    cache = VisionFeatureCache(max_in_memory=2)
    pixels, grid_thw = random_patches([[1, 4, 4]] * 3)
    cache.get_or_compute(model, ["a", "b", "c"], pixels, grid_thw)
    assert len(cache) == 2
    cache.get_or_compute(model, ["a"], pixels[:16], grid_thw[:1])
    assert cache.misses == 4


def test_feature_cache_rejects_keys_that_would_escape_its_folder(tmp_path: Path) -> None:
    cache = VisionFeatureCache(tmp_path)
    with pytest.raises(ValueError, match="unusable"):
        cache.get_or_compute(tiny_vlm(), ["../x"], *random_patches([[1, 4, 4]]))


def test_gather_token_states_picks_each_rows_token_in_one_op() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    input_ids = torch.tensor([[1, QUERY, 2, 3], [1, 2, 3, QUERY]])
    got = gather_token_states(hidden, input_ids, QUERY)
    assert torch.equal(got, torch.stack([hidden[0, 1], hidden[1, 3]]))


def test_gather_token_states_rejects_rows_without_exactly_one_token() -> None:
    hidden = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="exactly one"):
        gather_token_states(hidden, torch.tensor([[QUERY, QUERY, 1], [1, QUERY, 2]]), QUERY)
    with pytest.raises(ValueError, match="exactly one"):
        gather_token_states(hidden, torch.tensor([[1, 1, 1], [1, QUERY, 2]]), QUERY)


def trained_looking_relsim(backbone: Path) -> RelsimModel:
    """A relsim model whose LoRA and query-token embedding are away from their initial values,
    so that a path that skipped either would give different embeddings."""
    model = build_relsim_model(RelsimConfig(backbone=str(backbone), image_size=56), seed=0)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
                assert "lora_" in name or "trainable_tokens" in name
    return model.eval()


def test_frozen_vision_embeddings_equal_the_relsim_models_forward(
    tiny_backbone: Path, images: list[Image.Image]
) -> None:
    model = trained_looking_relsim(tiny_backbone)
    # Different sizes in one batch: windows of several lengths, padded rows.
    batch = model.encode([images[0], images[1].resize((112, 84)), images[2]])
    with torch.no_grad():
        expected = model(**batch)
    patch_vision_attention(model)
    got = frozen_vision_embeddings(model, batch)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(3))
    cached = VisionFeatureCache().get_or_compute(
        model.backbone, ["a", "b", "c"], batch["pixel_values"], batch["image_grid_thw"]
    )
    torch.testing.assert_close(frozen_vision_embeddings(model, batch, cached), expected)


def test_frozen_vision_embeddings_train_the_same_parameters_as_the_forward(
    tiny_backbone: Path, images: list[Image.Image]
) -> None:
    model = trained_looking_relsim(tiny_backbone).train()
    # LoRA dropout would draw different masks in the two passes.
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batch = model.encode(images[:2])
    grads = []
    for forward in (lambda: model(**batch), lambda: frozen_vision_embeddings(model, batch)):
        model.zero_grad(set_to_none=True)
        forward()[:, :4].sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert any("trainable_tokens" in n for n in grads[1])
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
