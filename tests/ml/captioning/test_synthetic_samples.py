"""Freshly drawn training samples for the captioner and the filter, the clutter they contrast
relations with, and the trainers' options that train on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml.captioning.captioner_training import CaptionerTrainConfig, train_captioner
from ml.captioning.filter_training import FilterTrainConfig, train_filter
from ml.captioning.interest_filter import FILTER_CONFIG_FILE, NO, YES
from ml.captioning.prompts import get_prompt
from ml.captioning.synthetic_samples import SyntheticCaptionSamples, SyntheticFilterSamples
from ml.synthetic.clutter import draw_clutter
from ml.synthetic.dataset import RELATIONS
from tests.ml.conftest import TINY_IMAGE_SIZE

PROMPT = get_prompt()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _captions(length: int = 40, **options: Any) -> SyntheticCaptionSamples:
    return SyntheticCaptionSamples(length, prompt=PROMPT, image_size=TINY_IMAGE_SIZE, **options)


def test_caption_sample_i_shows_relation_i_mod_10_with_its_template() -> None:
    samples = _captions(group_share=0.0)
    for index in (0, 3, 13, 39):
        sample = samples[(0, index)]
        assert sample.answer == RELATIONS[index % len(RELATIONS)].caption
        assert len(sample.images) == 1
        assert sample.prompt == PROMPT.single
        assert sample.images[0].size == (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)


def test_group_samples_hold_several_fresh_images_under_the_group_prompt() -> None:
    samples = _captions(group_share=1.0, min_images=2, max_images=3)
    counts = [samples.image_count(index) for index in range(40)]
    assert set(counts) == {2, 3}
    sample = samples[(0, 5)]
    assert len(sample.images) == counts[5]
    assert sample.prompt == PROMPT.text(counts[5])
    pixels = [np.asarray(image) for image in sample.images]
    assert not np.array_equal(pixels[0], pixels[1])  # each member has its own looks


def test_the_group_share_sets_how_many_samples_are_groups() -> None:
    samples = _captions(length=1000, group_share=0.3)
    groups = sum(samples.image_count(index) > 1 for index in range(1000))
    assert 230 < groups < 370


def test_caption_samples_depend_on_index_and_seed_only() -> None:
    first = np.asarray(_captions(seed=1)[(0, 7)].images[0])
    again = np.asarray(_captions(seed=1)[(5, 7)].images[0])
    other_seed = np.asarray(_captions(seed=2)[(0, 7)].images[0])
    other_index = np.asarray(_captions(seed=1)[(0, 17)].images[0])
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other_seed)
    assert not np.array_equal(first, other_index)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"length": 0}, "length"),
        ({"group_share": 1.5}, "group_share"),
        ({"min_images": 3, "max_images": 2}, "min_images"),
        ({"split": "val"}, "split"),
    ],
)
def test_bad_caption_stream_settings_are_refused(options: dict[str, Any], message: str) -> None:
    settings = {"length": 10, **options}
    length = settings.pop("length")
    with pytest.raises(ValueError, match=message):
        _captions(length, **settings)


def test_filter_samples_keep_the_requested_imbalance() -> None:
    samples = SyntheticFilterSamples(
        50, prompt="Interesting?", image_size=TINY_IMAGE_SIZE, clutter_per_relational=4
    )
    assert samples.labels.count(YES) == 10 and samples.labels.count(NO) == 40
    sample, label = samples[(0, 0)]
    assert label == YES and sample.prompt == "Interesting?" and sample.answer is None
    assert samples[(0, 1)][1] == NO
    # Relational samples cycle through every relation.
    yes_images = {np.asarray(samples[(0, i)][0].images[0]).tobytes() for i in range(0, 50, 5)}
    assert len(yes_images) == 10
    with pytest.raises(IndexError):
        samples[(0, 50)]


def test_clutter_is_fixed_by_its_key_and_checks_the_split() -> None:
    first = np.asarray(draw_clutter("a", 64))
    assert first.shape == (64, 64, 3)
    assert np.array_equal(first, np.asarray(draw_clutter("a", 64)))
    assert not np.array_equal(first, np.asarray(draw_clutter("b", 64)))
    assert not np.array_equal(first, np.asarray(draw_clutter("a", 64, "test")))
    with pytest.raises(ValueError, match="split"):
        draw_clutter("a", 64, "val")


def test_the_captioner_trains_on_drawn_samples_without_a_data_folder(
    tmp_path: Path, tiny_backbone: Path
) -> None:
    config = CaptionerTrainConfig(
        output_dir=str(tmp_path / "run"),
        backbone=str(tiny_backbone),
        synthetic_train_samples=12,
        synthetic_group_share=0.5,
        group_min_images=2,
        group_max_images=2,
        image_size=TINY_IMAGE_SIZE,
        finetune="full",
        freeze_vision=False,
        batch_size=4,
        epochs=1,
        lr=1e-3,
        warmup_steps=0,
    )
    result = train_captioner(config)
    assert result.global_step == 3
    assert result.checkpoint is not None
    record = json.loads((result.checkpoint / "captioner_config.json").read_text())
    assert record["extra"]["n_synthetic_samples"] == 12


def test_a_captioner_config_needs_data_or_a_stream(tmp_path: Path) -> None:
    config = CaptionerTrainConfig(output_dir=str(tmp_path), backbone="b")
    with pytest.raises(ValueError, match="data_dir is needed"):
        config.validate()


def test_the_filter_trains_on_drawn_relations_and_clutter(
    tmp_path: Path, tiny_backbone: Path
) -> None:
    config = FilterTrainConfig(
        output_dir=str(tmp_path / "run"),
        backbone=str(tiny_backbone),
        synthetic_train_images=12,
        synthetic_clutter_per_relational=2,
        image_size=TINY_IMAGE_SIZE,
        batch_size=4,
        epochs=1,
        warmup_steps=0,
    )
    result = train_filter(config)
    assert result.global_step == 3 and result.checkpoint is not None
    record = json.loads((result.checkpoint / FILTER_CONFIG_FILE).read_text())
    assert (record["extra"]["n_yes"], record["extra"]["n_no"]) == (4, 8)


def test_a_filter_config_needs_labels_or_a_stream(tmp_path: Path) -> None:
    config = FilterTrainConfig(output_dir=str(tmp_path), backbone="b")
    with pytest.raises(ValueError, match="data_file is needed"):
        config.validate()
