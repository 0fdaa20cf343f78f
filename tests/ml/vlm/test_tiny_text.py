from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ml.vlm.text_tower import TextTower
from ml.vlm.tiny_text import build_tiny_text_model

CAPTIONS = [
    "A tower of {Object}s stacked one directly on top of another.",
    "{Object}s spaced evenly around a circle, leaving its centre empty.",
    "Words the tokenizer never saw: zebra quokka.",
]


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_text_model(tmp_path_factory.mktemp("tiny_text"), seed=0)


def test_the_text_tower_loads_it_offline_and_gives_unit_384_vectors(
    tiny_text_model: Path,
) -> None:
    tower = TextTower(tiny_text_model)
    assert tower.dim == 384
    vectors = tower.encode(CAPTIONS)
    assert vectors.shape == (3, 384)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    # Different captions are different points, not one collapsed vector.
    assert float((vectors[0] - vectors[1]).norm()) > 1e-3


def test_the_same_text_gives_the_same_vector(tiny_text_model: Path) -> None:
    first = TextTower(tiny_text_model).encode(CAPTIONS)
    # A fresh tower, with the captions batched in another order and padding.
    again = TextTower(tiny_text_model).encode([CAPTIONS[2], CAPTIONS[0], CAPTIONS[1]])
    assert torch.allclose(first[0], again[1], atol=1e-5)
    assert torch.allclose(first[2], again[0], atol=1e-5)


def test_the_build_is_deterministic_by_seed(tiny_text_model: Path, tmp_path: Path) -> None:
    same = build_tiny_text_model(tmp_path / "same", seed=0)
    other = build_tiny_text_model(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "modules.json"):
        assert (same / name).read_bytes() == (tiny_text_model / name).read_bytes(), name
    assert (other / "model.safetensors").read_bytes() != (
        tiny_text_model / "model.safetensors"
    ).read_bytes()


def test_it_is_small_and_pools_by_mean(tiny_text_model: Path) -> None:
    size = sum(p.stat().st_size for p in tiny_text_model.rglob("*") if p.is_file())
    assert size < 8_000_000
    pooling = json.loads((tiny_text_model / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and pooling["word_embedding_dimension"] == 384


def test_another_dimension_can_be_asked_for(tmp_path: Path) -> None:
    tower = TextTower(build_tiny_text_model(tmp_path / "d64", dim=64))
    assert tower.encode(CAPTIONS[:1]).shape == (1, 64)
    with pytest.raises(ValueError, match="multiple"):
        build_tiny_text_model(tmp_path / "bad", dim=66)
