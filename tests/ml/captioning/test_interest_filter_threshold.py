from __future__ import annotations

import itertools

import numpy as np
import pytest

from ml.captioning.interest_filter import choose_threshold, roc_auc


@pytest.mark.parametrize("keep_rate", [0.02, 0.1, 0.25, 0.5, 0.9])
def test_the_threshold_keeps_the_requested_share_within_two_points(keep_rate: float) -> None:
    scores = np.random.default_rng(0).beta(2, 5, size=997)
    choice = choose_threshold(scores, keep_rate=keep_rate)
    kept = float((scores >= choice.threshold).mean())
    assert choice.met
    assert abs(kept - keep_rate) <= 0.02
    assert kept == pytest.approx(choice.keep_rate)


def test_ties_that_make_a_keep_rate_unreachable_are_reported() -> None:
    scores = [0.2] * 50 + [0.9] * 50
    choice = choose_threshold(scores, keep_rate=0.25)
    assert not choice.met
    assert choice.keep_rate in (0.0, 0.5)


def test_keeping_nothing_is_possible() -> None:
    choice = choose_threshold([0.1, 0.5, 0.9], keep_rate=0.0)
    assert choice.met and choice.keep_rate == 0.0
    assert choice.threshold > 0.9


def test_a_precision_target_keeps_the_most_positives_it_can() -> None:
    scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    labels = ["yes", "yes", "no", "yes", "yes", "no", "no", "yes"]
    choice = choose_threshold(scores, labels, min_precision=0.8)
    # Keeping the top 5 gives 4/5 = 0.8; any lower cut falls under it.
    assert choice.met
    assert choice.keep_rate == pytest.approx(5 / 8)
    assert choice.precision == pytest.approx(0.8)
    assert choice.recall == pytest.approx(4 / 5)
    assert 0.5 < choice.threshold < 0.6


def test_an_unreachable_precision_is_reported_with_the_best_cut() -> None:
    choice = choose_threshold([0.9, 0.8, 0.1], [0, 1, 1], min_precision=0.9)
    assert not choice.met
    assert choice.precision == pytest.approx(2 / 3)


def test_a_precision_target_needs_labels_and_one_target_only() -> None:
    with pytest.raises(ValueError, match="needs labels"):
        choose_threshold([0.1, 0.2], min_precision=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        choose_threshold([0.1, 0.2], keep_rate=0.5, min_precision=0.5)


def test_roc_auc_is_the_share_of_positive_negative_pairs_ranked_right() -> None:
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(40), 1)  # rounding makes ties
    labels = rng.random(40) < 0.3
    pairs = [
        1.0 if p > n else 0.5 if p == n else 0.0
        for p, n in itertools.product(scores[labels], scores[~labels])
    ]
    assert roc_auc(scores, labels) == pytest.approx(float(np.mean(pairs)))
    assert roc_auc([0.1, 0.9], ["no", "yes"]) == 1.0
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc([0.1, 0.9], [1, 1])
