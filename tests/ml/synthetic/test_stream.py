from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from ml.relsim.train import TrainConfig, train_relsim
from ml.synthetic.dataset import RELATIONS, SyntheticStream


def _pixels(stream: SyntheticStream, index: int) -> np.ndarray:
    return np.asarray(stream[index][0])


def test_a_stream_cycles_through_the_relations_with_their_captions() -> None:
    stream = SyntheticStream(25, image_size=56)
    assert len(stream) == 25
    for index in (0, 3, 9, 10, 24):
        image, caption, got_index = stream[index]
        assert image.size == (56, 56) and image.mode == "RGB"
        assert caption == RELATIONS[index % len(RELATIONS)].caption and got_index == index
    assert stream.captions() == [relation.caption for relation in RELATIONS]
    assert SyntheticStream(3, image_size=56).captions() == [r.caption for r in RELATIONS[:3]]


def test_every_item_is_a_new_image_yet_the_same_one_each_time() -> None:
    stream = SyntheticStream(40, image_size=56, seed=1)
    # Items 0, 10, 20, 30 share a relation but are different drawings.
    same_relation = [_pixels(stream, i).tobytes() for i in (0, 10, 20, 30)]
    assert len(set(same_relation)) == 4
    again = SyntheticStream(40, image_size=56, seed=1)
    assert np.array_equal(_pixels(stream, 7), _pixels(again, 7))
    other_seed = SyntheticStream(40, image_size=56, seed=2)
    assert not np.array_equal(_pixels(stream, 7), _pixels(other_seed, 7))
    # DataLoader workers receive a pickled copy.
    copied = pickle.loads(pickle.dumps(stream))
    assert np.array_equal(_pixels(copied, 7), _pixels(stream, 7))


def test_a_stream_rejects_bad_lengths_indexes_and_splits() -> None:
    with pytest.raises(ValueError, match="length"):
        SyntheticStream(0, image_size=56)
    with pytest.raises(ValueError, match="split"):
        SyntheticStream(5, image_size=56, split="val")
    with pytest.raises(IndexError):
        SyntheticStream(5, image_size=56)[5]


def test_training_on_a_synthetic_stream_needs_no_caption_file(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    config = TrainConfig(
        data_dir=str(tmp_path / "no_such_export"),
        synthetic_train_images=8,
        output_dir=str(tmp_path / "run"),
        backbone=str(tiny_backbone),
        image_size=56,
        finetune="full",
        freeze_vision=False,
        batch_size=4,
        epochs=1,
        lr=1e-3,
        log_every=1,
    )
    result = train_relsim(config)
    # 8 images in batches of 4: one pass is two steps.
    assert result.total_steps == 2 and result.global_step == 2
    rows = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    assert all(np.isfinite(row["loss"]) for row in rows)
    with pytest.raises(ValueError, match="synthetic_train_images"):
        TrainConfig.from_dict({**config.to_dict(), "synthetic_train_images": -1}).validate()
