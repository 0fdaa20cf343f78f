from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ml.relsim.inputs import QUERY_TOKEN
from ml.relsim.model import RelsimConfig, RelsimModel, add_query_token, build_relsim_model
from ml.vlm.backbone import load_vlm
from tests.ml.conftest import TINY_IMAGE_SIZE


def _model(backbone: Path, **overrides: object) -> RelsimModel:
    config = RelsimConfig(backbone=str(backbone), image_size=TINY_IMAGE_SIZE, **overrides)  # type: ignore[arg-type]
    return build_relsim_model(config, seed=0)


def test_query_token_is_added_once_and_then_reused(tiny_backbone: Path) -> None:
    vlm = load_vlm(tiny_backbone)
    before = len(vlm.tokenizer)
    first = add_query_token(vlm.tokenizer, vlm.model)
    second = add_query_token(vlm.tokenizer, vlm.model)
    assert first == second == before
    assert len(vlm.tokenizer) == before + 1
    assert vlm.tokenizer.convert_ids_to_tokens(first) == QUERY_TOKEN
    # The embedding tables grew to hold the new token.
    assert vlm.model.get_input_embeddings().weight.shape[0] > first
    assert vlm.model.get_output_embeddings().weight.shape[0] > first


def test_query_token_reuses_a_spare_row_without_resizing(tiny_backbone: Path) -> None:
    vlm = load_vlm(tiny_backbone)
    vlm.model.resize_token_embeddings(len(vlm.tokenizer) + 8)  # spare rows, as in real Qwen
    rows = vlm.model.get_input_embeddings().weight.shape[0]
    add_query_token(vlm.tokenizer, vlm.model)
    assert vlm.model.get_input_embeddings().weight.shape[0] == rows


def test_inputs_hold_image_then_query_in_one_user_turn(
    tiny_backbone: Path, images: list[Image.Image]
) -> None:
    model = _model(tiny_backbone)
    batch = model.inputs(images[:1])
    text = model.tokenizer.decode(batch["input_ids"][0])
    assert "<|im_start|>user\n<|vision_start|><|image_pad|>" in text
    assert text.endswith(f"<|vision_end|>{QUERY_TOKEN}<|im_end|>\n")
    n_image = int((batch["mm_token_type_ids"][0] == 1).sum())
    assert n_image == (TINY_IMAGE_SIZE // 28) ** 2


def test_embeddings_have_text_dim_and_unit_norm(
    tiny_backbone: Path, images: list[Image.Image]
) -> None:
    embeddings = _model(tiny_backbone).embed_images(images)
    assert embeddings.shape == (len(images), 384)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(len(images)), atol=1e-5)
    assert not torch.allclose(embeddings[0], embeddings[1])


def test_an_image_gets_the_same_embedding_alone_or_in_a_batch(
    tiny_backbone: Path, images: list[Image.Image]
) -> None:
    model = _model(tiny_backbone)
    together = model.embed_images(images)
    alone = model.embed_images(images[2:3])
    assert torch.allclose(together[2], alone[0], atol=1e-5)


@pytest.mark.parametrize("count", [0, 2])
def test_it_rejects_a_sample_without_exactly_one_query_token(
    tiny_backbone: Path, images: list[Image.Image], count: int
) -> None:
    model = _model(tiny_backbone)
    batch = model.encode(images[:2])
    ids = batch["input_ids"]
    row = ids[1]
    query_at = int((row == model.query_token_id).nonzero()[0])
    if count == 0:
        row[query_at] = model.tokenizer.get_vocab()["<|im_end|>"]
    else:
        row[query_at + 1] = model.query_token_id
    with pytest.raises(ValueError, match=r"exactly one <\|query\|>.*\(1, " + str(count) + r"\)"):
        model(**batch)


def test_lora_trains_the_query_embedding_adapters_and_head_but_not_vision(
    tiny_backbone: Path, images: list[Image.Image]
) -> None:
    model = _model(tiny_backbone)
    names = [name for name, _ in model.trainable_named_parameters()]
    assert any("lora_A" in n for n in names)
    assert all(".visual." not in n for n in names)
    assert all("language_model" in n for n in names if "lora_" in n)
    targets = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in names if "lora_A" in n}
    assert targets == {"q_proj", "v_proj"}
    before = model.query_input_embedding()
    vision_before = {k: v.clone() for k, v in model.core.visual.state_dict().items()}
    optimizer = torch.optim.SGD([p for _, p in model.trainable_named_parameters()], lr=1.0)
    model.train()
    model(**model.encode(images)).pow(3).sum().backward()
    optimizer.step()
    assert not torch.allclose(model.query_input_embedding(), before)
    assert all(torch.equal(v, model.core.visual.state_dict()[k]) for k, v in vision_before.items())


def test_lora_targets_are_configurable(tiny_backbone: Path) -> None:
    model = _model(tiny_backbone, lora_targets=["gate_proj"], lora_r=4)
    lora = [n for n, _ in model.trainable_named_parameters() if "lora_A" in n]
    assert lora and all(".mlp.gate_proj." in n and "language_model" in n for n in lora)


def test_full_finetuning_trains_the_language_model_and_keeps_vision_frozen(
    tiny_backbone: Path,
) -> None:
    model = _model(tiny_backbone, finetune="full")
    names = [name for name, _ in model.trainable_named_parameters()]
    assert any("language_model.layers.0.mlp" in n for n in names)
    assert any("embed_tokens" in n for n in names)
    assert not any(".visual." in n or "lm_head" in n for n in names)


def test_lora_with_a_trainable_vision_tower_is_refused(tiny_backbone: Path) -> None:
    with pytest.raises(ValueError, match="vision tower"):
        _model(tiny_backbone, freeze_vision=False)
