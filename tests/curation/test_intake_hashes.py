"""Perceptual hashes find near-duplicates; thumbnails are small, sized and reproducible."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageOps

from curation.intake import (
    THUMBNAIL_CONTENT_TYPE,
    hamming_distance,
    make_thumbnail,
    normalise_image,
    perceptual_hash,
)
from tests.curation import awkward_files as aw

NEAR = 6  # bits; a resized or recompressed copy stays within this
FAR = 16  # bits; an unrelated picture is at least this far


def test_a_hash_is_sixteen_hex_characters():
    value = perceptual_hash(aw.scene())
    assert len(value) == 16
    int(value, 16)


def test_hashing_the_same_picture_twice_gives_the_same_hash():
    assert perceptual_hash(aw.scene(seed=3)) == perceptual_hash(aw.scene(seed=3))


@pytest.mark.parametrize("seed", range(4))
def test_a_resized_copy_hashes_within_a_few_bits(seed):
    original = aw.scene(256, 192, seed=seed)
    smaller = original.resize((128, 96), Image.Resampling.BILINEAR)
    assert hamming_distance(perceptual_hash(original), perceptual_hash(smaller)) <= NEAR


@pytest.mark.parametrize("seed", range(4))
def test_a_recompressed_copy_hashes_within_a_few_bits(seed):
    original = aw.scene(256, 192, seed=seed)
    jpeg = Image.open(io.BytesIO(aw.encode(original, "JPEG", quality=60)))
    assert hamming_distance(perceptual_hash(original), perceptual_hash(jpeg)) <= NEAR


@pytest.mark.parametrize("seed", range(4))
def test_a_different_picture_hashes_far_away(seed):
    original = aw.scene(256, 192, seed=seed)
    other = aw.scene(256, 192, seed=seed + 100)
    assert hamming_distance(perceptual_hash(original), perceptual_hash(other)) >= FAR
    mirrored = ImageOps.mirror(original)
    assert hamming_distance(perceptual_hash(original), perceptual_hash(mirrored)) >= FAR


def test_normalise_image_reports_the_hash_of_the_stored_pixels():
    result = normalise_image(aw.encode(aw.scene(seed=6), "JPEG", quality=90))
    stored = Image.open(io.BytesIO(result.png))
    assert result.phash == perceptual_hash(stored)


def test_hamming_distance_counts_differing_bits():
    assert hamming_distance("0" * 16, "0" * 16) == 0
    assert hamming_distance("0" * 16, "f" * 16) == 64
    assert hamming_distance("0000000000000001", "0000000000000003") == 1


def test_hamming_distance_refuses_hashes_of_different_lengths():
    with pytest.raises(ValueError):
        hamming_distance("00", "000")


@pytest.mark.parametrize(("size", "expected"), [((400, 200), (256, 128)), ((90, 300), (77, 256))])
def test_a_thumbnail_has_the_requested_longest_side(size, expected):
    png = aw.encode(aw.scene(*size), "PNG")
    thumb = Image.open(io.BytesIO(make_thumbnail(png)))
    assert thumb.size == expected
    assert Image.MIME[thumb.format] == THUMBNAIL_CONTENT_TYPE


def test_a_thumbnail_of_a_small_image_is_scaled_up_to_the_size():
    png = aw.encode(aw.scene(40, 20), "PNG")
    assert Image.open(io.BytesIO(make_thumbnail(png, size=64))).size == (64, 32)


def test_thumbnails_are_deterministic():
    png = normalise_image(aw.cmyk_jpeg()).png
    assert make_thumbnail(png, size=48) == make_thumbnail(png, size=48)


def test_a_thumbnail_size_must_be_positive():
    with pytest.raises(ValueError):
        make_thumbnail(aw.rgb_png(), size=0)
