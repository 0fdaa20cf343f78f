from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from ml.baselines.attributes import (
    ColourHistogram,
    DctHash,
    DifferenceHash,
    RawPixels,
    attribute_baselines,
)
from ml.search.embedder import Embedder
from ml.synthetic.dataset import draw_example

BASELINES = attribute_baselines()


def _images() -> list[Image.Image]:
    return [
        draw_example(name, seed=seed, size=96)
        for name in ("ring", "stack", "inside")
        for seed in (0, 1)
    ]


@pytest.mark.parametrize("embedder", BASELINES, ids=lambda e: e.name)
def test_baselines_embed_unit_rows_deterministically(embedder: Embedder) -> None:
    assert isinstance(embedder, Embedder)
    images = _images()
    first = embedder.embed(images)
    again = embedder.embed(images)
    assert first.dtype == np.float32
    assert first.ndim == 2 and first.shape[0] == len(images)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert len({row.tobytes() for row in first}) == len(images)


@pytest.mark.parametrize("embedder", BASELINES, ids=lambda e: e.name)
def test_baselines_accept_an_empty_batch_and_other_modes(embedder: Embedder) -> None:
    assert embedder.embed([]).shape[0] == 0
    grey = draw_example("ring", seed=0, size=64).convert("L")
    rgba = draw_example("ring", seed=0, size=64).convert("RGBA")
    assert embedder.embed([grey, rgba]).shape[0] == 2


def test_baseline_names_are_distinct() -> None:
    assert len({e.name for e in BASELINES}) == len(BASELINES)


def test_colour_histogram_ignores_layout_but_not_colour() -> None:
    left = Image.new("RGB", (32, 32), "white")
    ImageDraw.Draw(left).rectangle((0, 0, 15, 31), fill="red")
    mirrored = ImageOps.mirror(left)
    blue = Image.new("RGB", (32, 32), "white")
    ImageDraw.Draw(blue).rectangle((0, 0, 15, 31), fill="blue")
    a, b, c = ColourHistogram().embed([left, mirrored, blue])
    assert a @ b == pytest.approx(1.0)
    assert a @ c < 0.9


def test_raw_pixels_see_layout() -> None:
    left = Image.new("RGB", (32, 32), "white")
    ImageDraw.Draw(left).rectangle((0, 0, 15, 31), fill="red")
    a, b = RawPixels(side=8).embed([left, ImageOps.mirror(left)])
    assert RawPixels(side=8).embed([left]).shape == (1, 192)
    assert a @ b < 0.0


@pytest.mark.parametrize("hasher", [DctHash(), DifferenceHash()], ids=lambda h: h.name)
def test_hashes_have_64_bits_and_cosine_tracks_hamming_distance(hasher) -> None:
    image = draw_example("grid_gap", seed=2, size=128)
    other = draw_example("made_of", seed=5, size=128)
    bits = hasher.bits(image)
    assert bits.size == 64
    assert bits.dtype == np.bool_
    hamming = int(np.count_nonzero(bits != hasher.bits(other)))
    a, b = hasher.embed([image, other])
    assert a @ b == pytest.approx(1 - 2 * hamming / 64, abs=1e-6)


@pytest.mark.parametrize("hasher", [DctHash(), DifferenceHash()], ids=lambda h: h.name)
def test_hashes_survive_resizing_but_separate_different_images(hasher) -> None:
    image = draw_example("inside", seed=1, size=224)
    smaller = image.resize((150, 150), Image.Resampling.BILINEAR)
    other = draw_example("grid_gap", seed=8, size=224)
    near = np.count_nonzero(hasher.bits(image) != hasher.bits(smaller))
    far = np.count_nonzero(hasher.bits(image) != hasher.bits(other))
    assert near <= 6
    assert far > near + 8


def test_dct_hash_ignores_overall_brightness() -> None:
    image = draw_example("ring", seed=4, size=96).convert("L")
    brighter = image.point(lambda v: min(255, v + 20))
    hasher = DctHash()
    assert np.count_nonzero(hasher.bits(image) != hasher.bits(brighter)) <= 4
