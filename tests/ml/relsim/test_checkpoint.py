from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from ml.relsim.checkpoint import (
    CONFIG_FILE,
    PROJECTION_FILE,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from ml.relsim.model import RelsimConfig, RelsimModel, build_relsim_model
from tests.ml.conftest import TINY_IMAGE_SIZE


def _perturbed_model(backbone: Path, **overrides: object) -> RelsimModel:
    config = RelsimConfig(backbone=str(backbone), image_size=TINY_IMAGE_SIZE, **overrides)  # type: ignore[arg-type]
    model = build_relsim_model(config, seed=1)
    # Move every trainable tensor away from its initial value, as training would.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, param in model.trainable_named_parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_save_then_load_gives_identical_embeddings(
    tiny_backbone: Path, images: list[Image.Image], tmp_path: Path, finetune: str
) -> None:
    model = _perturbed_model(tiny_backbone, finetune=finetune)
    expected = model.embed_images(images)
    folder = save_checkpoint(model, tmp_path / "ckpt", global_step=12, epoch=2)
    loaded = load_checkpoint(folder)
    assert torch.equal(loaded.embed_images(images), expected)
    assert torch.equal(loaded.query_input_embedding(), model.query_input_embedding())
    info = read_checkpoint_info(folder)
    assert (info.global_step, info.epoch, info.released_layout) == (12, 2, False)


def test_the_folder_uses_the_released_layout(tiny_backbone: Path, tmp_path: Path) -> None:
    folder = save_checkpoint(_perturbed_model(tiny_backbone), tmp_path / "ckpt", global_step=3)
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
        PROJECTION_FILE,
        CONFIG_FILE,
    ):
        assert (folder / name).is_file(), name
    state = torch.load(folder / PROJECTION_FILE, weights_only=True)
    assert set(state) == {"projection", "query_token_id", "global_step", "epoch"}
    assert state["projection"]["weight"].shape == (384, 64)


def test_a_checkpoint_in_the_release_layout_loads(
    tiny_backbone: Path, images: list[Image.Image], tmp_path: Path
) -> None:
    # The release: LoRA on every q_proj/v_proj listed by name, no trainable query row,
    # and no relsim_config.json of ours.
    model = _perturbed_model(tiny_backbone, train_query_token=False)
    expected = model.embed_images(images)
    folder = save_checkpoint(model, tmp_path / "release", global_step=2000)
    (folder / CONFIG_FILE).unlink()
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    adapter_config["target_modules"] = ["q_proj", "v_proj"]
    adapter_config["task_type"] = "CAUSAL_LM"
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config))
    info = read_checkpoint_info(folder, base_model=tiny_backbone)
    assert info.released_layout and info.config.lora_targets == ["q_proj", "v_proj"]
    loaded = load_checkpoint(folder, base_model=tiny_backbone)
    loaded.config.image_size = TINY_IMAGE_SIZE
    loaded.inputs.image_size = TINY_IMAGE_SIZE
    assert torch.allclose(loaded.embed_images(images), expected, atol=1e-6)


def test_loading_a_folder_that_is_not_a_checkpoint_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=PROJECTION_FILE):
        load_checkpoint(tmp_path)
