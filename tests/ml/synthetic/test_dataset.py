from __future__ import annotations

import hashlib
import io
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ml.synthetic.dataset import (
    RELATIONS,
    draw_example,
    generate_dataset,
    read_labels,
    relation_by_name,
)
from ml.synthetic.shapes import COLOURS, SHAPES, combinations_for, is_held_out, random_style

ROOT = Path(__file__).resolve().parents[3]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            return False
    return depth == 0


def test_there_are_at_least_eight_relations_with_unique_names() -> None:
    names = [r.name for r in RELATIONS]
    assert len(names) >= 8
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("relation", RELATIONS, ids=lambda r: r.name)
def test_every_relation_draws_rgb_at_the_requested_size(relation) -> None:
    for size in (64, 112):
        image = draw_example(relation.name, seed=3, size=size)
        assert image.mode == "RGB"
        assert image.size == (size, size)
        # Something besides the background was drawn.
        assert len(image.getcolors(maxcolors=size * size) or []) > 20


@pytest.mark.parametrize("relation", RELATIONS, ids=lambda r: r.name)
def test_every_caption_is_anonymous_with_balanced_placeholders(relation) -> None:
    assert _balanced(relation.caption)
    assert re.search(r"\{[A-Z][A-Za-z]*\}", relation.caption)


def test_relation_draw_accepts_an_rng_size_and_style() -> None:
    rng = random.Random(5)
    image = RELATIONS[0].draw(rng, 96, random_style(rng, "train"))
    assert image.size == (96, 96)


def test_the_same_seed_gives_identical_bytes() -> None:
    for relation in RELATIONS:
        first = _png(draw_example(relation.name, seed=11, size=96))
        again = _png(draw_example(relation.name, seed=11, size=96))
        assert first == again


def test_different_seeds_give_different_images() -> None:
    for relation in RELATIONS:
        images = {_png(draw_example(relation.name, seed=s, size=96)) for s in range(4)}
        assert len(images) == 4


def test_train_and_test_splits_draw_different_images_for_the_same_seed() -> None:
    a = _png(draw_example("ring", seed=0, size=96, split="train"))
    b = _png(draw_example("ring", seed=0, size=96, split="test"))
    assert a != b


def test_it_rejects_unknown_relations_and_splits() -> None:
    with pytest.raises(ValueError, match="known"):
        draw_example("no_such_relation", seed=0)
    with pytest.raises(ValueError, match="split"):
        draw_example("ring", seed=0, split="validation")


def test_held_out_pairings_are_disjoint_yet_cover_every_shape_and_colour() -> None:
    train, test = set(combinations_for("train")), set(combinations_for("test"))
    assert not train & test
    assert len(train | test) == len(SHAPES) * len(COLOURS)
    for split in (train, test):
        assert {s for s, _ in split} == set(SHAPES)
        assert {c for _, c in split} == set(COLOURS)
    assert all(is_held_out(s, c) for s, c in test)


def test_styles_only_hand_out_pairings_of_their_split() -> None:
    rng = random.Random(0)
    for split in ("train", "test"):
        for _ in range(50):
            style = random_style(rng, split)
            look = style.look(rng)
            assert is_held_out(look.shape, look.colour) == (split == "test")


def test_generate_dataset_writes_parseable_released_formats(tmp_path: Path) -> None:
    dataset = generate_dataset(tmp_path, seed=1, per_relation=5, size=64, group_size=3)
    assert dataset.n_train + dataset.n_test == 5 * len(RELATIONS)

    train = [json.loads(line) for line in dataset.train_captions.read_text().splitlines()]
    test = [json.loads(line) for line in dataset.test_captions.read_text().splitlines()]
    assert len(train) == dataset.n_train
    assert len(test) == dataset.n_test == len(RELATIONS)  # round(5 * 0.25) per relation
    for row in train + test:
        assert set(row) == {"image_hash", "url_link", "caption"}
        path = dataset.images_dir / f"{row['image_hash']}.png"
        data = path.read_bytes()
        assert hashlib.md5(data).hexdigest() == row["image_hash"]
        assert row["url_link"].startswith("synthetic://")
        assert _balanced(row["caption"])
        with Image.open(path) as image:
            assert image.mode == "RGB"
            assert image.size == (64, 64)

    labels = read_labels(tmp_path)
    assert len(labels) == dataset.n_images
    for row in train:
        assert labels[row["image_hash"]].split == "train"
        relation = relation_by_name(labels[row["image_hash"]].relation)
        assert row["caption"] == relation.caption
    assert all(labels[row["image_hash"]].split == "test" for row in test)

    groups = json.loads(dataset.seed_groups.read_text())
    assert len(groups) == dataset.n_groups > 0
    train_hashes = {row["image_hash"] for row in train}
    for group in groups:
        assert 2 <= len(group["image_urls"]) <= 3
        assert _balanced(group["anonymous_caption"])
        members = [Path(url).stem for url in group["image_urls"]]
        assert set(members) <= train_hashes
        assert {labels[m].relation for m in members} == {
            r.name for r in RELATIONS if r.caption == group["anonymous_caption"]
        }
        for url in group["image_urls"]:
            assert (tmp_path / url).is_file()


def test_generate_dataset_is_deterministic_by_seed(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", seed=4, per_relation=2, size=48)
    b = generate_dataset(tmp_path / "b", seed=4, per_relation=2, size=48)
    c = generate_dataset(tmp_path / "c", seed=5, per_relation=2, size=48)
    assert a.train_captions.read_bytes() == b.train_captions.read_bytes()
    assert a.labels.read_bytes() == b.labels.read_bytes()
    assert a.labels.read_bytes() != c.labels.read_bytes()


def test_groups_of_two_leave_an_odd_image_out_rather_than_grow(tmp_path: Path) -> None:
    dataset = generate_dataset(tmp_path, per_relation=3, size=32, test_fraction=0.0, group_size=2)
    groups = json.loads(dataset.seed_groups.read_text())
    assert all(len(g["image_urls"]) == 2 for g in groups)
    assert len(groups) == len(RELATIONS)


def test_generate_dataset_stops_when_asked_and_reports_progress(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    polls = iter(range(1000))
    dataset = generate_dataset(
        tmp_path,
        per_relation=3,
        size=32,
        progress=lambda done, total, message: calls.append((done, total)),
        should_stop=lambda: next(polls) >= 4,
    )
    assert dataset.stopped
    assert dataset.n_images == 4
    assert len(json.loads(dataset.labels.read_text())) == 4
    assert calls[0] == (0, 3 * len(RELATIONS))
    assert calls[-1][0] == 4


def test_the_command_line_writes_a_data_set(tmp_path: Path) -> None:
    options = ["--per-relation", "2", "--size", "32", "--seed", "7"]
    result = subprocess.run(
        [sys.executable, "-m", "ml.synthetic.dataset", str(tmp_path), *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "seed groups" in result.stdout
    assert (tmp_path / "seed_group.json").is_file()
    assert len(list((tmp_path / "images").glob("*.png"))) == 2 * len(RELATIONS)
