"""The tuned baselines train through the shared loop: they learn (held-out images of two
relations, untrained guessing vs trained right) and resume where a stopped run left off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ml.baselines import TunedConfig, TunedVisionModel, build_tuned_model, load_tuned
from ml.baselines import tuned as tuned_module
from ml.relsim import ContrastiveLoss
from ml.vlm import TextTower, build_tiny_clip
from tests.ml.conftest import TINY_IMAGE_SIZE, TwoRelations

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(
        tmp_path_factory.mktemp("clip"),
        seed=0,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        intermediate_size=128,
        projection_dim=64,
        image_size=TINY_IMAGE_SIZE,
    )


def _config(clip: Path, data: TwoRelations, output_dir: Path, **overrides: object) -> TunedConfig:
    config = TunedConfig(
        kind="clip",
        base_model=str(clip),
        train_file=str(data.train_file),
        output_dir=str(output_dir),
        finetune="full",
        batch_size=16,
        epochs=1,  # 800 images: 50 steps
        lr=1e-3,
        warmup_steps=5,
        seed=0,
    )
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def _held_out(model: TunedVisionModel, data: TwoRelations) -> tuple[float, float]:
    text = TextTower().encode(data.captions)
    images = model.embed_images([image for image, _ in data.held_out])
    labels = data.labels()
    accuracy = float(((images @ text.T).argmax(dim=1) == labels).float().mean())
    return accuracy, float(ContrastiveLoss(0.07)(images, text, labels))


def test_tuned_clip_trains_to_tell_held_out_relations_apart(
    clip: Path, two_relations: TwoRelations, tmp_path: Path
) -> None:
    config = _config(clip, two_relations, tmp_path / "run")
    untrained_accuracy, untrained_loss = _held_out(
        build_tuned_model(config, device="cpu"), two_relations
    )
    result = tuned_module.train_tuned_baseline(config)
    assert result.checkpoint is not None
    accuracy, loss = _held_out(load_tuned(result.checkpoint), two_relations)
    assert untrained_accuracy <= 0.6 and untrained_loss > 0.69
    assert accuracy >= 0.8, (untrained_accuracy, accuracy)
    assert loss < 0.45 and loss < untrained_loss - 0.2, (untrained_loss, loss)


def test_a_stopped_tuned_run_resumes_to_the_same_weights(
    clip: Path, two_relations: TwoRelations, tmp_path: Path
) -> None:
    straight = tuned_module.train_tuned_baseline(
        _config(clip, two_relations, tmp_path / "straight", max_steps=6)
    )
    config = _config(clip, two_relations, tmp_path / "resumed", max_steps=6)
    steps = 0

    def stop_after_three() -> bool:
        nonlocal steps
        steps += 1
        return steps == 3

    first = tuned_module.train_tuned_baseline(config, should_stop=stop_after_three)
    assert first.stopped and first.global_step == 3
    second = tuned_module.train_tuned_baseline(config)
    assert second.resumed_from == first.checkpoint and second.global_step == 6
    assert straight.checkpoint is not None and second.checkpoint is not None
    assert second.losses == straight.losses[3:]
    a, b = load_tuned(straight.checkpoint), load_tuned(second.checkpoint)
    for (name, left), (_, right) in zip(
        a.state_dict().items(), b.state_dict().items(), strict=True
    ):
        assert torch.equal(left, right), name
