"""Tuned CLIP / DINO: LoRA + head trained with relsim's loss on a few synthetic images, and their
checkpoints' round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.baselines.tuned import (
    CONFIG_FILE,
    PROJECTION_FILE,
    TunedConfig,
    TunedEmbedder,
    TunedVisionModel,
    build_tuned_model,
    load_tuned,
    save_tuned,
    train_tuned_baseline,
)
from ml.data.captions import DataFormatError, read_split
from ml.relsim.losses import ContrastiveLoss, unique_captions
from ml.synthetic.dataset import generate_dataset
from ml.vlm.tiny_vision import build_tiny_clip, build_tiny_dinov2
from tests.ml.conftest import draw_image


@pytest.fixture(scope="module")
def towers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("towers")
    return {
        "clip": build_tiny_clip(root / "clip", seed=0),
        "dino": build_tiny_dinov2(root / "dino", seed=0),
    }


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 train images of each of the 10 relations (and 1 test image each), 64 px."""
    out = tmp_path_factory.mktemp("synthetic")
    generate_dataset(out, seed=0, per_relation=4, size=64)
    return out


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Random values in every trainable tensor (LoRA's B starts at zero and would hide a
    broken adapter round trip)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in model.trainable_named_parameters():  # type: ignore[operator]
            param.copy_(0.2 * torch.randn(param.shape, generator=generator))


def _training_set_loss(model: TunedVisionModel, data_dir: Path) -> float:
    """InfoNCE of every train image against all of the split's captions at once."""
    from ml.vlm.text_tower import TextTower

    records = read_split(data_dir, "train")
    images = [Image.open(record.image_path).convert("RGB") for record in records]
    texts, targets = unique_captions([record.caption for record in records])
    text_emb = TextTower().encode(texts)
    return float(ContrastiveLoss()(model.embed_images(images), text_emb, targets))


@pytest.mark.parametrize("kind", ["clip", "dino"])
def test_training_lowers_the_contrastive_loss(
    kind: str, towers: dict[str, Path], synthetic: Path, tmp_path: Path
) -> None:
    config = TunedConfig(
        kind=kind,
        base_model=str(towers[kind]),
        data_dir=str(synthetic),
        output_dir=str(tmp_path / "run"),
        batch_size=10,
        epochs=8,
        lr=3e-3,
        seed=0,
    )
    # The same seed draws the same starting LoRA and head as the training run's.
    before = _training_set_loss(build_tuned_model(config, device="cpu"), synthetic)
    reports: list[tuple[int, int, str]] = []
    result = train_tuned_baseline(config, progress=lambda *r: reports.append(r))
    assert result.global_step == result.total_steps == 8 * 3  # 30 train images, batches of 10
    assert not result.stopped and result.checkpoint is not None
    after = _training_set_loss(load_tuned(result.checkpoint), synthetic)
    assert after < before - 0.15, (before, after)
    assert np.mean(result.losses[-3:]) < np.mean(result.losses[:3])
    logged = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    assert [row["step"] for row in logged] == list(range(1, result.global_step + 1))
    assert reports[-1][2] == "done"


def test_only_lora_and_the_head_train_by_default(towers: dict[str, Path]) -> None:
    model = build_tuned_model(TunedConfig(kind="clip", base_model=str(towers["clip"])))
    names = [name for name, _ in model.trainable_named_parameters()]
    assert names and all("lora_" in name or name.startswith("projection.") for name in names)
    assert any(name.startswith("projection.") for name in names)
    assert any("q_proj" in name for name in names) and any("v_proj" in name for name in names)


@pytest.mark.parametrize(
    ("kind", "finetune"), [("clip", "lora"), ("dino", "lora"), ("dino", "full")]
)
def test_a_saved_tuned_model_loads_back_to_identical_embeddings(
    kind: str, finetune: str, towers: dict[str, Path], tmp_path: Path
) -> None:
    config = TunedConfig(kind=kind, base_model=str(towers[kind]), finetune=finetune)
    model = build_tuned_model(config, device="cpu")
    _perturb(model, seed=1)
    images = [draw_image(i) for i in range(3)]
    before = model.embed_images(images)
    folder = save_tuned(model, tmp_path / "ckpt", global_step=7)
    assert (folder / PROJECTION_FILE).is_file() and (folder / CONFIG_FILE).is_file()
    loaded = load_tuned(folder, device="cpu")
    assert not any(p.requires_grad for p in loaded.parameters())
    after = TunedEmbedder(loaded).embed(images)
    np.testing.assert_allclose(after, before.numpy(), atol=1e-6)
    # The adapter really is part of it: the untouched base tower gives other embeddings.
    fresh = build_tuned_model(config, device="cpu")
    fresh.projection.load_state_dict(model.projection.state_dict())
    assert not np.allclose(fresh.embed_images(images).numpy(), after, atol=1e-4)


def test_a_lora_checkpoint_can_be_pointed_at_a_moved_base(
    towers: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    model = build_tuned_model(TunedConfig(kind="dino", base_model=str(towers["dino"])))
    _perturb(model, seed=2)
    folder = save_tuned(model, tmp_path / "ckpt")
    moved = shutil.copytree(towers["dino"], tmp_path / "moved")
    loaded = load_tuned(folder, base_model=moved)
    image = [draw_image(5)]
    np.testing.assert_allclose(
        loaded.embed_images(image).numpy(), model.embed_images(image).numpy(), atol=1e-6
    )


def test_a_stop_request_saves_what_was_learnt(
    towers: dict[str, Path], synthetic: Path, tmp_path: Path
) -> None:
    config = TunedConfig(
        kind="dino",
        base_model=str(towers["dino"]),
        data_dir=str(synthetic),
        output_dir=str(tmp_path / "run"),
        batch_size=10,
        epochs=5,
    )
    result = train_tuned_baseline(config, should_stop=lambda: True)
    assert result.stopped and result.global_step == 1 and result.total_steps == 15
    assert result.checkpoint is not None
    assert load_tuned(result.checkpoint).embed_images([draw_image(0)]).shape == (1, 384)


def test_a_tower_trains_on_freshly_drawn_images_without_a_data_set(
    towers: dict[str, Path], tmp_path: Path
) -> None:
    config = TunedConfig(
        kind="clip",
        base_model=str(towers["clip"]),
        synthetic_train_images=20,
        synthetic_image_size=56,
        output_dir=str(tmp_path / "run"),
        batch_size=10,
        epochs=1,
    )
    result = train_tuned_baseline(config)
    # 20 images in batches of 10: one epoch is two steps, each over 10 distinct relations.
    assert result.global_step == 2 and not result.stopped
    assert all(np.isfinite(result.losses))
    assert result.checkpoint is not None


def test_training_needs_two_images(towers: dict[str, Path], tmp_path: Path) -> None:
    image = draw_image(0)
    image.save(tmp_path / "aa.png")
    line = {"image_hash": "aa", "url_link": "", "caption": "one {Object}"}
    (tmp_path / "one.jsonl").write_text(json.dumps(line) + "\n")
    config = TunedConfig(
        kind="clip",
        base_model=str(towers["clip"]),
        train_file=str(tmp_path / "one.jsonl"),
        output_dir=str(tmp_path / "run"),
    )
    with pytest.raises(DataFormatError, match="two"):
        train_tuned_baseline(config)


def test_bad_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match="kind"):
        TunedConfig(kind="vit", base_model="x").validate()
    with pytest.raises(ValueError, match="finetune"):
        TunedConfig(kind="clip", base_model="x", finetune="half").validate()
    with pytest.raises(ValueError, match="unknown"):
        TunedConfig.from_dict({"kind": "clip", "base_model": "x", "colour": 1})
