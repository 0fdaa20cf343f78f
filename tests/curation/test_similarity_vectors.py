"""The perceptual-hash source's vectors: ids ascending whatever order the table holds them
in, one ±1/8 entry per hash bit, and a new image seen on the next call."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from curation.models import Image
from curation.similarity import PerceptualHashSimilarity, _HashFile

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


@pytest.fixture(autouse=True)
def no_cached_vectors() -> Iterator[None]:
    """The cache is per process and keyed on the highest id: none may outlive its test."""
    PerceptualHashSimilarity._cache = None
    yield
    PerceptualHashSimilarity._cache = None


def _image(pk: int, phash: str) -> Image:
    return Image(
        id=pk,
        sha256=f"{pk:064x}",
        md5=f"{pk:032x}",
        width=1,
        height=1,
        original_format="PNG",
        file=f"images/{pk}.png",
        phash=phash,
    )


def _expected(phash: str) -> list[float]:
    return [0.125 if bit == "1" else -0.125 for bit in f"{int(phash, 16):064b}"]


def test_vectors_are_the_hash_bits_in_id_order_however_the_rows_were_inserted() -> None:
    rng = random.Random(4)
    hashes = {pk: f"{rng.getrandbits(64):016x}" for pk in range(1, 41)}
    hashes[7] = "0" * 16
    hashes[8] = "f" * 16
    order = list(hashes)
    rng.shuffle(order)
    Image.objects.bulk_create([_image(pk, hashes[pk]) for pk in order])

    ids, matrix = PerceptualHashSimilarity().vectors()

    assert ids.dtype == np.int64 and matrix.dtype == np.float32
    assert ids.tolist() == sorted(hashes)
    for row, pk in enumerate(ids.tolist()):
        assert matrix[row].tolist() == _expected(hashes[pk])
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0)

    Image.objects.bulk_create([_image(100, "0123456789abcdef")])
    ids, matrix = PerceptualHashSimilarity().vectors()
    assert ids[-1] == 100 and matrix[-1].tolist() == _expected("0123456789abcdef")


def test_an_empty_pool_has_no_vectors() -> None:
    ids, matrix = PerceptualHashSimilarity().vectors()
    assert len(ids) == 0 and matrix.shape == (0, 64)


def test_a_new_process_reads_the_hash_file_and_only_the_images_added_since(
    django_assert_num_queries: Any,
) -> None:
    Image.objects.bulk_create([_image(pk, f"{pk:016x}") for pk in range(1, 31)])
    PerceptualHashSimilarity().vectors()
    assert _HashFile.path().is_file()

    PerceptualHashSimilarity._cache = None  # as in a new process
    Image.objects.bulk_create([_image(31, "f" * 16)])
    ids, matrix = PerceptualHashSimilarity().vectors()
    assert ids.tolist() == list(range(1, 32))
    assert matrix[-1].tolist() == _expected("f" * 16)
    with np.load(_HashFile.path()) as stored:
        assert stored["ids"].tolist() == list(range(1, 32))

    PerceptualHashSimilarity._cache = None
    # Unchanged: the highest id, the file's two end rows checked, nothing else read.
    with django_assert_num_queries(2):
        again, _ = PerceptualHashSimilarity().vectors()
    assert again.tolist() == ids.tolist()


def test_a_hash_file_of_another_database_is_not_trusted() -> None:
    Image.objects.bulk_create([_image(pk, f"{pk:016x}") for pk in range(1, 11)])
    PerceptualHashSimilarity().vectors()
    # The database is rebuilt with other images under the same ids.
    Image.objects.all().delete()
    Image.objects.bulk_create([_image(pk, f"{pk + 500:016x}") for pk in range(1, 11)])
    PerceptualHashSimilarity._cache = None
    ids, matrix = PerceptualHashSimilarity().vectors()
    assert ids.tolist() == list(range(1, 11))
    assert matrix[0].tolist() == _expected(f"{501:016x}")
