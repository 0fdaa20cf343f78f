"""Agreement counted by the database: the kappas from SQL counts equal the definitions
computed label by label in Python."""

from __future__ import annotations

import random
from collections import Counter
from itertools import combinations
from typing import Any

import pytest

from curation import labelling
from curation.models import Image, InterestLabel

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

# Usernames whose Python order differs from their creation order and from a case-insensitive
# database collation's: pairs must still be named the way the Python definition names them.
NAMES = ("zoe", "amy", "Bob", "carl", "Dan")


def _images(count: int) -> list[Image]:
    return Image.objects.bulk_create(
        Image(
            sha256=f"{n:064x}",
            md5=f"{n:032x}",
            width=1,
            height=1,
            original_format="PNG",
            file=f"images/{n}.png",
            phash=f"{n:016x}",
        )
        for n in range(count)
    )


def _close(got: float | None, want: float | None) -> bool:
    if got is None or want is None:
        return got is want
    return got == pytest.approx(want, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kappas_from_sql_counts_equal_the_python_definitions_on_random_labels(
    make_user: Any, seed: int
) -> None:
    rng = random.Random(seed)
    users = [make_user(name) for name in NAMES]
    answers: dict[int, dict[str, bool]] = {}
    labels = []
    for image in _images(80):
        for user in rng.sample(users, rng.choice([1, 1, 2, 2, 2, 3, 4, 5])):
            interesting = rng.random() < 0.4
            labels.append(InterestLabel(image=image, annotator=user, interesting=interesting))
            answers.setdefault(image.pk, {})[user.username] = interesting
    InterestLabel.objects.bulk_create(labels)

    result = labelling.agreement(limit=7)

    several = {pk: given for pk, given in sorted(answers.items()) if len(given) >= 2}
    counts = [[sum(given.values()), len(given) - sum(given.values())] for given in several.values()]
    assert _close(result.fleiss_kappa, labelling.fleiss_kappa(counts))
    by_pair: dict[tuple[str, str], list[tuple[bool, bool]]] = {}
    for given in several.values():
        for first, second in combinations(sorted(given), 2):
            by_pair.setdefault((first, second), []).append((given[first], given[second]))
    assert [(p.first, p.second, p.images) for p in result.pairs] == [
        (first, second, len(pairs)) for (first, second), pairs in sorted(by_pair.items())
    ]
    for pair in result.pairs:
        assert _close(pair.kappa, labelling.cohen_kappa(by_pair[pair.first, pair.second]))
    mixed = [pk for pk, given in several.items() if len(set(given.values())) == 2]
    assert (result.images_with_several_labels, result.disagreeing) == (len(several), len(mixed))
    assert [row.image.pk for row in result.disagreements] == mixed[:7]
    for row in result.disagreements:
        given = answers[row.image.pk]
        assert row.yes == sorted(name for name, yes in given.items() if yes)
        assert row.no == sorted(name for name, yes in given.items() if not yes)


def test_the_count_based_kappas_match_the_textbook_cases() -> None:
    counts = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    histogram = Counter(tuple(row) for row in counts)
    assert labelling.fleiss_kappa_from_histogram(histogram) == pytest.approx(0.20993, abs=1e-5)
    assert labelling.fleiss_kappa_from_histogram({(2, 0): 2}) is None
    assert labelling.fleiss_kappa_from_histogram({}) is None
    table = {(True, True): 20, (True, False): 5, (False, True): 10, (False, False): 15}
    assert labelling.cohen_kappa_from_counts(table) == pytest.approx(0.4)
    assert labelling.cohen_kappa_from_counts({(True, True): 3}) is None
    assert labelling.cohen_kappa_from_counts({}) is None
