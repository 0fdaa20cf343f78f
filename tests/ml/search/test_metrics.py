from __future__ import annotations

import math

import numpy as np
import pytest

from ml.search.metrics import evaluate_retrieval


def _on_circle(degrees: list[float]) -> np.ndarray:
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_scores_match_a_hand_computed_ranking() -> None:
    # Rankings by angle (self excluded):
    #   q0 A   0: r1 A, r2, r3, r4      -> hit at 1
    #   q1 A  20: r2, r0 A, r3, r4      -> first hit at 2
    #   q2 B  30: r1, r0, r3 B, r4      -> first hit at 3
    #   q3 B 100: r2 B, r1, r0, r4      -> hit at 1
    #   q4 C 200: nobody shares C       -> skipped
    embeddings = _on_circle([0, 20, 30, 100, 200])
    scores = evaluate_retrieval(embeddings, ["A", "A", "B", "B", "C"], ks=(1, 2, 3))
    assert scores.n_queries == 4
    assert scores.n_skipped == 1
    assert scores.precision_at_1 == pytest.approx(2 / 4)
    assert scores.mean_average_precision == pytest.approx((1 + 1 / 2 + 1 / 3 + 1) / 4)
    assert scores.recall_at_k == pytest.approx({1: 0.5, 2: 0.75, 3: 1.0})


def test_average_precision_counts_every_relevant_item() -> None:
    # q0 A 0: r1 B (10), r2 A (20), r3 A (50) -> hits at ranks 2 and 3.
    embeddings = _on_circle([0, 10, 20, 50])
    scores = evaluate_retrieval(embeddings, ["A", "B", "A", "A"], ks=(1, 2, 3), queries=[0])
    assert scores.n_queries == 1
    assert scores.mean_average_precision == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert scores.recall_at_k == pytest.approx({1: 0.0, 2: 0.5, 3: 1.0})


def test_scores_use_cosine_so_vector_lengths_do_not_matter() -> None:
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((40, 8))
    labels = [i % 4 for i in range(40)]
    scaled = embeddings * rng.uniform(0.1, 10.0, (40, 1))
    assert evaluate_retrieval(embeddings, labels) == evaluate_retrieval(scaled, labels)


def test_a_query_never_retrieves_itself() -> None:
    # Two far-apart pairs: the best hit of every query is its partner, never itself.
    embeddings = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.14, 0.99]])
    perfect = evaluate_retrieval(embeddings, ["x", "x", "y", "y"])
    assert perfect.precision_at_1 == 1.0
    assert perfect.mean_average_precision == 1.0
    swapped = evaluate_retrieval(embeddings, ["x", "y", "x", "y"])
    assert swapped.precision_at_1 == 0.0


def test_random_embeddings_score_near_chance() -> None:
    rng = np.random.default_rng(1)
    labels = [i % 5 for i in range(500)]
    scores = evaluate_retrieval(rng.standard_normal((500, 64)), labels)
    assert math.isclose(scores.precision_at_1, 99 / 499, abs_tol=0.08)


def test_it_rejects_mismatched_labels_and_bad_k() -> None:
    with pytest.raises(ValueError, match="label"):
        evaluate_retrieval(np.ones((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="k"):
        evaluate_retrieval(np.ones((3, 2)), ["a", "b", "a"], ks=(0,))


def test_as_dict_flattens_recall() -> None:
    scores = evaluate_retrieval(_on_circle([0, 10, 90, 100]), ["a", "a", "b", "b"], ks=(1, 3))
    flat = scores.as_dict()
    assert flat["recall_at_3"] == 1.0
    assert flat["precision_at_1"] == 1.0
