from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ml.data.images import preprocess_image
from ml.vlm.backbone import (
    QWEN_SPECIAL_TOKENS,
    build_tiny_vlm,
    load_vlm,
    qwen25vl_7b_config,
)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_tiny_backbone_is_an_ordinary_folder_under_a_megabyte(tiny_backbone: Path) -> None:
    assert (tiny_backbone / "config.json").is_file()
    assert (tiny_backbone / "preprocessor_config.json").is_file()
    assert _folder_bytes(tiny_backbone) < 1_000_000


def test_tiny_tokenizer_carries_qwen_special_tokens_in_qwen_order(tiny_backbone: Path) -> None:
    vlm = load_vlm(tiny_backbone)
    ids = [vlm.tokenizer.get_vocab()[t] for t in QWEN_SPECIAL_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    # Special tokens stay whole when they appear in text.
    encoded = vlm.tokenizer("<|vision_start|><|image_pad|><|vision_end|>", add_special_tokens=False)
    assert len(encoded["input_ids"]) == 3
    assert vlm.model.config.image_token_id == vlm.tokenizer.get_vocab()["<|image_pad|>"]


def test_tiny_chat_template_puts_the_image_in_a_user_turn(tiny_backbone: Path) -> None:
    vlm = load_vlm(tiny_backbone)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    text = vlm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith(
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert text.startswith("<|im_start|>system\n")


def test_the_same_seed_builds_the_same_weights(tmp_path: Path) -> None:
    first = load_vlm(build_tiny_vlm(tmp_path / "a", seed=7)).model.state_dict()
    second = load_vlm(build_tiny_vlm(tmp_path / "b", seed=7)).model.state_dict()
    other = load_vlm(build_tiny_vlm(tmp_path / "c", seed=8)).model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_full_size_config_describes_the_7b_model_without_a_download() -> None:
    config = qwen25vl_7b_config()
    assert config.vision_config.out_hidden_size == config.text_config.hidden_size == 3584
    assert config.text_config.num_hidden_layers == 28
    assert config.image_token_id == 151655
    head_dim = config.text_config.hidden_size // config.text_config.num_attention_heads
    assert sum(config.text_config.rope_parameters["mrope_section"]) * 2 == head_dim


def test_preprocess_centre_crops_to_a_square_and_resizes() -> None:
    image = Image.new("RGB", (300, 100), (0, 0, 0))
    image.paste((255, 0, 0), (100, 0, 200, 100))  # the centre third is red
    out = preprocess_image(image.convert("RGBA"), 56)
    assert out.size == (56, 56)
    assert out.mode == "RGB"
    assert out.getpixel((28, 28)) == (255, 0, 0)
    assert out.getpixel((1, 1)) == (255, 0, 0)


def test_preprocess_rejects_sizes_the_vision_tower_cannot_tile() -> None:
    with pytest.raises(ValueError, match="multiple of 28"):
        preprocess_image(Image.new("RGB", (64, 64)), 64)


def test_fan_in_init_redraws_linear_weights_at_their_fan_in_scale(tmp_path: Path) -> None:
    qwen = load_vlm(build_tiny_vlm(tmp_path / "q", seed=3)).model
    fan_in = load_vlm(build_tiny_vlm(tmp_path / "f", seed=3, init="fan-in")).model
    again = load_vlm(build_tiny_vlm(tmp_path / "g", seed=3, init="fan-in")).model
    layer = "model.language_model.layers.0.mlp.down_proj.weight"
    weights = dict(fan_in.named_parameters())[layer].detach()
    # Kaiming-uniform with a=sqrt(5): uniform(+-1/sqrt(fan_in)), std 1/sqrt(3 * fan_in).
    expected = 1 / (3 * weights.shape[1]) ** 0.5
    assert abs(float(weights.std()) - expected) < 0.1 * expected
    assert abs(float(dict(qwen.named_parameters())[layer].detach().std()) - 0.02) < 0.002
    assert torch.equal(weights, dict(again.named_parameters())[layer])


def test_an_unknown_init_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="init must be one of"):
        build_tiny_vlm(tmp_path / "x", init="xavier")
