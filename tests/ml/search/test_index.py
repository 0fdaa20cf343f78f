from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ml.search.index
from ml.search.embedder import l2_normalise
from ml.search.index import ExactIndex, IVFIndex, load_index, spherical_kmeans, write_index


def _unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return l2_normalise(np.random.default_rng(seed).standard_normal((n, dim)))


def _clustered(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((clusters, dim)))
    members = rng.integers(0, clusters, n)
    return l2_normalise(centres[members] + 0.25 * rng.standard_normal((n, dim)) / np.sqrt(dim))


def _ids(n: int) -> list[str]:
    return [f"item-{i}" for i in range(n)]


def _brute_force(matrix, queries, k, exclude=None):
    """Full sort by (-score, row): the reference every search must reproduce."""
    scores = l2_normalise(queries) @ matrix.astype(np.float32).T
    out = []
    for b, line in enumerate(scores):
        rows = [
            r
            for r in np.lexsort((np.arange(len(line)), -line))
            if exclude is None or r != exclude[b]
        ]
        out.append(rows[:k])
    return out


def test_exact_search_matches_a_full_sort() -> None:
    matrix = _unit_rows(300, 16)
    queries = np.random.default_rng(1).standard_normal((7, 16))
    result = ExactIndex(matrix, _ids(300)).search(queries, k=5)
    assert result.rows.tolist() == _brute_force(matrix, queries, 5)
    expected = np.sort(l2_normalise(queries) @ matrix.T, axis=1)[:, ::-1][:, :5]
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5, atol=1e-6)
    assert result.ids[0] == [f"item-{r}" for r in result.rows[0]]


def test_a_single_query_vector_is_accepted_and_normalised() -> None:
    matrix = _unit_rows(50, 8)
    index = ExactIndex(matrix, _ids(50))
    one = index.search(matrix[3] * 7.0, k=3)
    assert one.rows.shape == (1, 3)
    assert one.rows[0, 0] == 3
    assert one.scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_search_ids_excludes_each_query_itself() -> None:
    matrix = _unit_rows(120, 12)
    index = ExactIndex(matrix, _ids(120))
    queries = ["item-0", "item-5", "item-119"]
    result = index.search_ids(queries, k=4)
    rows = [0, 5, 119]
    assert result.rows.tolist() == _brute_force(matrix, matrix[rows], 4, exclude=rows)
    for query, hits in zip(queries, result.ids, strict=True):
        assert query not in hits
        assert len(hits) == 4


def test_exclusion_by_row_applies_per_query() -> None:
    matrix = _unit_rows(40, 6)
    index = ExactIndex(matrix, _ids(40))
    result = index.search(matrix[[2, 9]], k=1, exclude_rows=[2, None])
    assert result.rows[0, 0] != 2
    assert result.rows[1, 0] == 9


def test_ties_are_broken_by_the_lowest_row() -> None:
    base = np.eye(4, dtype=np.float32)
    # Rows 1, 3, 4 and 6 are identical, so they tie for every query.
    matrix = np.stack([base[1], base[0], base[2], base[0], base[0], base[3], base[0]])
    index = ExactIndex(matrix, _ids(7))
    result = index.search(base[0], k=3)
    assert result.rows.tolist() == [[1, 3, 4]]
    assert index.search(base[0], k=3, exclude_rows=[3]).rows.tolist() == [[1, 4, 6]]


def test_ties_across_blocks_keep_the_lowest_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ml.search.index, "_SCORE_BLOCK", 3)
    matrix = np.tile(np.eye(3, dtype=np.float32)[:1], (10, 1))
    result = ExactIndex(matrix, _ids(10)).search(matrix[0], k=4, exclude_rows=[1])
    assert result.rows.tolist() == [[0, 2, 3, 4]]


def test_k_larger_than_the_index_returns_every_row_then_padding() -> None:
    matrix = _unit_rows(5, 4)
    index = ExactIndex(matrix, _ids(5))
    result = index.search_ids(["item-2"], k=50)
    assert result.rows.shape == (1, 5)
    assert result.rows[0, -1] == -1
    assert result.scores[0, -1] == -np.inf
    assert sorted(result.rows[0, :-1].tolist()) == [0, 1, 3, 4]
    assert len(result.ids[0]) == 4


def test_an_empty_index_and_an_empty_batch_return_empty_results() -> None:
    empty = ExactIndex(np.zeros((0, 8), np.float32), [])
    result = empty.search(np.ones((2, 8)), k=3)
    assert result.rows.shape == (2, 0)
    assert result.ids == [[], []]
    none = ExactIndex(_unit_rows(10, 8), _ids(10)).search(np.zeros((0, 8)), k=3)
    assert none.rows.shape == (0, 3)


def test_it_rejects_bad_queries_and_ids() -> None:
    index = ExactIndex(_unit_rows(10, 8), _ids(10))
    with pytest.raises(ValueError, match="queries"):
        index.search(np.ones((2, 5)), k=3)
    with pytest.raises(ValueError, match="k must"):
        index.search(np.ones(8), k=0)
    with pytest.raises(KeyError, match="nope"):
        index.search_ids(["nope"])
    with pytest.raises(ValueError, match="unique"):
        ExactIndex(_unit_rows(2, 8), ["a", "a"])
    with pytest.raises(ValueError, match="ids"):
        ExactIndex(_unit_rows(3, 8), ["a", "b"])


def test_blocked_and_streamed_search_agree_with_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = _unit_rows(200, 10).astype(np.float16)
    queries = np.random.default_rng(3).standard_normal((6, 10))
    whole = ExactIndex(matrix, _ids(200)).search(queries, k=7, exclude_rows=[0, 1, 2, 3, 4, 5])
    monkeypatch.setattr(ml.search.index, "_SCORE_BLOCK", 6 * 13)
    blocked = ExactIndex(matrix, _ids(200)).search(queries, k=7, exclude_rows=[0, 1, 2, 3, 4, 5])
    monkeypatch.setattr(ml.search.index, "_CONVERT_ROWS", 17)
    streamed = ExactIndex(matrix, _ids(200), in_memory=False)
    assert streamed.matrix.dtype == np.float16
    result = streamed.search(queries, k=7, exclude_rows=[0, 1, 2, 3, 4, 5])
    assert blocked.rows.tolist() == whole.rows.tolist() == result.rows.tolist()
    np.testing.assert_allclose(result.scores, whole.scores, rtol=1e-5)


def test_written_indexes_load_back_memory_mapped(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).standard_normal((30, 12)) * 3
    write_index(tmp_path / "index", _ids(30), raw, {"model": "tiny", "dim": 12})
    stored = np.load(tmp_path / "index" / "embeddings.npy")
    assert stored.dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(stored.astype(np.float32), axis=1), 1, atol=2e-3)
    assert json.loads((tmp_path / "index" / "ids.json").read_text()) == _ids(30)
    assert not list((tmp_path / "index").glob(".*tmp"))

    index = load_index(tmp_path / "index")
    assert index.meta == {"model": "tiny", "dim": 12}
    assert index.matrix.dtype == np.float32
    assert index.search_ids(["item-4"], k=1).ids[0] != ["item-4"]
    mapped = load_index(tmp_path / "index", in_memory=False)
    assert isinstance(mapped.matrix, np.memmap)
    assert (
        mapped.search_ids(["item-4"], k=3).rows.tolist()
        == index.search_ids(["item-4"], k=3).rows.tolist()
    )


def test_write_index_rejects_ids_that_do_not_match_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_index(tmp_path, ["a"], np.ones((2, 3)), {})
    with pytest.raises(ValueError):
        write_index(tmp_path, ["a", "a"], np.ones((2, 3)), {})


def test_spherical_kmeans_finds_well_separated_clusters() -> None:
    vectors = _clustered(600, 32, clusters=6, seed=2)
    centroids = spherical_kmeans(vectors, 6, iterations=15, seed=0)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-5)
    # Every point sits close to some centroid: the clusters were found.
    assert np.min(np.max(vectors @ centroids.T, axis=1)) > 0.8


def test_ivf_probing_every_list_is_exact() -> None:
    matrix = _unit_rows(400, 16, seed=4)
    index = IVFIndex.build(matrix, _ids(400), nlist=8, seed=0)
    queries = ["item-1", "item-50", "item-399"]
    exact = ExactIndex(matrix, _ids(400)).search_ids(queries, k=10)
    approx = index.search_ids(queries, k=10, nprobe=8)
    assert approx.rows.tolist() == exact.rows.tolist()
    np.testing.assert_allclose(approx.scores, exact.scores, rtol=1e-5)


def test_ivf_recall_on_clustered_data_is_high_with_few_probes() -> None:
    matrix = _clustered(3000, 32, clusters=40, seed=5)
    ids = _ids(3000)
    queries = [f"item-{i}" for i in range(0, 3000, 30)]
    exact = ExactIndex(matrix, ids).search_ids(queries, k=10)
    index = IVFIndex.build(matrix, ids, nlist=50, seed=0)
    recalls = []
    for nprobe in (1, 4):
        approx = index.search_ids(queries, k=10, nprobe=nprobe)
        found = [len(set(a) & set(e)) for a, e in zip(approx.ids, exact.ids, strict=True)]
        recalls.append(sum(found) / (10 * len(queries)))
        assert all(q not in hits for q, hits in zip(queries, approx.ids, strict=True))
    assert recalls[1] >= 0.95
    assert recalls[1] >= recalls[0]


def test_ivf_handles_k_beyond_its_lists_and_empty_batches() -> None:
    matrix = _unit_rows(12, 4, seed=6)
    index = IVFIndex.build(matrix, _ids(12), nlist=4, seed=0)
    result = index.search(matrix[:2], k=30, nprobe=4, exclude_rows=[0, None])
    assert result.rows.shape == (2, 12)
    assert 0 not in result.rows[0]
    assert result.rows[0, -1] == -1
    assert sorted(result.rows[1].tolist()) == list(range(12))
    assert index.search(np.zeros((0, 4)), k=3).rows.shape == (0, 3)


def test_ivf_build_is_deterministic_by_seed_and_reports_progress() -> None:
    matrix = _clustered(500, 16, clusters=10, seed=7)
    calls: list[int] = []
    a = IVFIndex.build(
        matrix, _ids(500), nlist=10, seed=3, progress=lambda d, t, m: calls.append(d)
    )
    b = IVFIndex.build(matrix, _ids(500), nlist=10, seed=3)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.sorted_rows, b.sorted_rows)
    assert calls[0] == 0
    assert calls[-1] == 3
    np.testing.assert_allclose(a.vectors([5, 7]), matrix[[5, 7]])


def test_ivf_single_queries_agree_with_batched_ones() -> None:
    matrix = _clustered(800, 16, clusters=12, seed=8)
    index = IVFIndex.build(matrix, _ids(800), nlist=12, seed=0)
    rows = [3, 40, 41, 500]
    batched = index.search(matrix[rows], k=6, exclude_rows=rows, nprobe=2)
    for line, row in enumerate(rows):
        single = index.search(matrix[row], k=6, exclude_rows=[row], nprobe=2)
        assert single.rows.tolist() == [batched.rows[line].tolist()]
        np.testing.assert_allclose(single.scores[0], batched.scores[line], rtol=1e-5)


def test_an_ivf_single_query_pads_when_its_lists_hold_fewer_than_k_rows() -> None:
    matrix = _clustered(40, 8, clusters=4, seed=9)
    index = IVFIndex.build(matrix, _ids(40), nlist=4, seed=0)
    result = index.search(matrix[0], k=39, exclude_rows=[0], nprobe=1)
    assert result.rows.shape == (1, 39)
    assert 0 not in result.rows[0]
    assert result.rows[0, -1] == -1
    real = result.rows[0][result.rows[0] >= 0]
    assert len(result.ids[0]) == len(real) < 39
