"""relsim's trainer learns: on held-out images of two relations (shape x colour pairings it
never saw), the untrained model guesses and the trained one picks the right caption."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ml.relsim import ContrastiveLoss, RelsimModel, TrainConfig, build_relsim_model, load_checkpoint
from ml.relsim import train as relsim_train
from ml.vlm import TextTower
from tests.ml.conftest import TINY_IMAGE_SIZE, TwoRelations

pytestmark = pytest.mark.slow


def _config(backbone: Path, data: TwoRelations, output_dir: Path, **overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {
        "data_dir": str(data.train_file.parent),
        "train_file": str(data.train_file),
        "output_dir": str(output_dir),
        "backbone": str(backbone),
        "image_size": TINY_IMAGE_SIZE,
        # A random tiny backbone has nothing to adapt: train all of it.
        "finetune": "full",
        "freeze_vision": False,
        "batch_size": 16,
        "epochs": 1,  # 800 images: 50 steps, every image seen once
        "lr": 1e-3,
        "warmup_steps": 5,
        "save_every": 1000,
        "seed": 0,
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def _held_out(model: RelsimModel, data: TwoRelations) -> tuple[float, float]:
    """(accuracy of the nearest caption, image->text loss) over the held-out images."""
    text = TextTower().encode(data.captions)
    images = model.embed_images([image for image, _ in data.held_out], preprocessed=True)
    labels = data.labels()
    accuracy = float(((images @ text.T).argmax(dim=1) == labels).float().mean())
    return accuracy, float(ContrastiveLoss(0.07)(images, text, labels))


def test_relsim_trains_to_tell_held_out_relations_apart(
    learnable_backbone: Path, two_relations: TwoRelations, tmp_path: Path
) -> None:
    config = _config(learnable_backbone, two_relations, tmp_path / "run")
    untrained_accuracy, untrained_loss = _held_out(
        build_relsim_model(config.model_config(), seed=config.seed), two_relations
    )
    result = relsim_train.train_relsim(config)
    assert result.checkpoint is not None
    accuracy, loss = _held_out(load_checkpoint(result.checkpoint), two_relations)
    # Two captions: chance is 0.5 and a know-nothing loss is ln 2 = 0.69.
    assert untrained_accuracy <= 0.6 and untrained_loss > 0.69
    assert accuracy >= 0.75, (untrained_accuracy, accuracy)
    assert loss < 0.55 and loss < untrained_loss - 0.15, (untrained_loss, loss)


def test_the_trainer_merges_repeated_captions_into_one_text_column(
    learnable_backbone: Path,
    two_relations: TwoRelations,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, list[int]]] = []
    original = ContrastiveLoss.forward

    def spy(
        self: ContrastiveLoss, image: torch.Tensor, text: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        seen.append((int(text.shape[0]), targets.tolist()))
        return original(self, image, text, targets)

    monkeypatch.setattr(ContrastiveLoss, "forward", spy)
    config = _config(learnable_backbone, two_relations, tmp_path / "run", max_steps=3)
    relsim_train.train_relsim(config)
    assert len(seen) == 3
    for columns, targets in seen:
        # 16 images of two relations: two text columns, every image aimed at its caption's.
        assert len(targets) == 16 and columns == 2
        assert sorted(set(targets)) == [0, 1]
