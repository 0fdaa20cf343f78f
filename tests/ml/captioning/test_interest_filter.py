from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ml.captioning.filter_training import (
    FilterTrainConfig,
    _BalancedOrder,
    class_weights,
    read_filter_labels,
    train_filter,
)
from ml.captioning.interest_filter import (
    FILTER_PROMPT_VERSION,
    NO,
    YES,
    FilterConfig,
    InterestFilter,
    build_filter,
    get_filter_prompt,
    load_filter,
    score_images,
)
from ml.data.captions import DataFormatError
from tests.ml.conftest import TINY_IMAGE_SIZE, draw_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def interest_filter(tiny_backbone: Path) -> InterestFilter:
    return build_filter(FilterConfig(backbone=str(tiny_backbone), image_size=TINY_IMAGE_SIZE))


def labelled_picture(index: int, interesting: bool) -> Image.Image:
    """Interesting pictures are dark with a bright bar, the rest light with a small square."""
    image = Image.new("RGB", (56, 56), (25, 25, 40) if interesting else (235, 235, 225))
    draw = ImageDraw.Draw(image)
    offset = (index * 7) % 30
    if interesting:
        draw.rectangle((4, offset, 52, offset + 8), fill=(250, 230, 60))
    else:
        draw.rectangle((offset, offset, offset + 10, offset + 10), fill=(200, 60, 60))
    return image


def write_labels(folder: Path, n_yes: int = 3, n_no: int = 21) -> Path:
    """About 1 yes to 7 no, like the paper's labels; yes images named by path, no by md5."""
    import hashlib
    import io

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_yes + n_no):
        interesting = i < n_yes
        buffer = io.BytesIO()
        labelled_picture(i, interesting).save(buffer, format="PNG")
        digest = hashlib.md5(buffer.getvalue()).hexdigest()
        (images / f"{digest}.png").write_bytes(buffer.getvalue())
        if interesting:
            rows.append({"image": f"images/{digest}.png", "label": "yes"})
        else:
            rows.append({"image_hash": digest, "label": "no"})
    path = folder / "labels.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_the_score_is_the_probability_of_yes_against_no(interest_filter: InterestFilter) -> None:
    images = [draw_image(i) for i in range(3)]
    scores = score_images(interest_filter, images, batch_size=2)
    assert len(scores) == 3
    assert all(0.0 <= s <= 1.0 for s in scores)
    samples = interest_filter.samples(images)
    batch = interest_filter.inputs(samples, padding_side="left")
    with torch.no_grad():
        logits = interest_filter.model(**batch).logits[:, -1]
    yes, no = interest_filter.yes_token_id, interest_filter.no_token_id
    expected = torch.softmax(logits[:, [no, yes]], dim=-1)[:, 1]
    assert torch.allclose(torch.tensor(scores), expected, atol=1e-5)


def test_yes_and_no_are_read_from_the_first_token_of_each_answer(
    interest_filter: InterestFilter,
) -> None:
    prompt = get_filter_prompt(FILTER_PROMPT_VERSION)
    tokenizer = interest_filter.tokenizer
    assert interest_filter.yes_token_id == tokenizer(prompt.yes)["input_ids"][0]
    assert interest_filter.no_token_id == tokenizer(prompt.no)["input_ids"][0]
    assert interest_filter.yes_token_id != interest_filter.no_token_id


def test_labels_are_read_by_path_or_hash_and_checked(tmp_path: Path) -> None:
    path = write_labels(tmp_path, n_yes=2, n_no=3)
    items = read_filter_labels(path)
    assert [item.label for item in items] == [YES, YES, NO, NO, NO]
    assert all(item.image_path.is_file() for item in items)
    path.write_text(json.dumps({"image": items[0].image_path.name, "label": "maybe"}) + "\n")
    with pytest.raises(DataFormatError, match="label must be yes or no"):
        read_filter_labels(path, image_dir=tmp_path / "images")


def test_class_weights_give_both_classes_the_same_total_weight() -> None:
    labels = [YES] * 2 + [NO] * 16
    weights = class_weights(labels)
    assert float(weights[YES]) * 2 == pytest.approx(float(weights[NO]) * 16)
    with pytest.raises(DataFormatError, match="both yes and no"):
        class_weights([NO, NO])


def test_balanced_sampling_draws_as_many_yes_as_no() -> None:
    labels = [YES] * 3 + [NO] * 27
    order = _BalancedOrder(labels, seed=0)(epoch=0)
    assert len(order) == 30
    assert sum(labels[i] == YES for i in order) == 15
    assert order == _BalancedOrder(labels, seed=0)(epoch=0)
    assert order != _BalancedOrder(labels, seed=0)(epoch=1)


@pytest.mark.parametrize("imbalance", ["weighted", "balanced"])
def test_training_on_imbalanced_labels_moves_the_scores_the_right_way(
    tmp_path: Path, tiny_backbone: Path, imbalance: str
) -> None:
    labels_path = write_labels(tmp_path / "data")
    items = read_filter_labels(labels_path)
    images = [Image.open(item.image_path).convert("RGB") for item in items]
    truth = np.array([item.label == YES for item in items])
    config = FilterTrainConfig(
        data_file=str(labels_path),
        output_dir=str(tmp_path / "run"),
        backbone=str(tiny_backbone),
        image_size=TINY_IMAGE_SIZE,
        imbalance=imbalance,
        batch_size=8,
        epochs=20,
        max_steps=12,
        lr=5e-3,
        warmup_steps=0,
        lora_r=8,
        save_every=100,
    )
    before = np.array(score_images(build_filter(config.model_config()), images))
    result = train_filter(config)
    assert result.checkpoint is not None
    after = np.array(score_images(load_filter(result.checkpoint), images))
    gap_before = before[truth].mean() - before[~truth].mean()
    gap_after = after[truth].mean() - after[~truth].mean()
    assert gap_after > gap_before + 0.2
    # The rare class is not drowned: yes images end up above one half, no images below.
    assert after[truth].min() > 0.5 > after[~truth].max()


def test_a_saved_filter_scores_like_the_one_that_was_saved(
    interest_filter: InterestFilter, tmp_path: Path
) -> None:
    from ml.captioning.interest_filter import save_filter

    images = [draw_image(i) for i in range(2)]
    save_filter(interest_filter, tmp_path / "filter")
    loaded = load_filter(tmp_path / "filter")
    assert score_images(loaded, images) == pytest.approx(score_images(interest_filter, images))
    assert loaded.config.prompt_version == FILTER_PROMPT_VERSION
