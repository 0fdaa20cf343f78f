from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ml.vlm.text_tower import TextTower, caption_key


@pytest.fixture(scope="module")
def tower(tmp_path_factory: pytest.TempPathFactory) -> TextTower:
    return TextTower(cache_dir=tmp_path_factory.mktemp("text_cache"))


def test_it_embeds_captions_to_unit_384_vectors(tower: TextTower) -> None:
    out = tower.encode(["A {Animal} peering out from behind a {Object}.", "Rows of {Object}."])
    assert out.shape == (2, 384)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_related_captions_are_closer_than_unrelated_ones(tower: TextTower) -> None:
    a, b, c = tower.encode(
        [
            "A cat hiding behind a box.",
            "A kitten peeking from behind a crate.",
            "Stock prices rose.",
        ]
    )
    assert float(a @ b) > float(a @ c)


def test_it_is_frozen(tower: TextTower) -> None:
    assert not any(p.requires_grad for p in tower.model.parameters())


def test_embeddings_are_cached_in_memory_and_on_disk(tower: TextTower) -> None:
    caption = "Layers of a {Object} like the layers of a {Planet}."
    first = tower.encode([caption, caption])
    assert torch.equal(first[0], first[1])
    assert tower.cache_dir is not None
    key = caption_key(caption)
    assert (tower.cache_dir / key[:2] / f"{key}.npy").is_file()
    # A new tower on the same folder answers from disk without running its model.
    again = TextTower(cache_dir=tower.cache_dir)
    again.model = None  # type: ignore[assignment]
    assert torch.equal(again.encode([caption])[0], first[0])


def test_a_missing_model_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TextTower(tmp_path / "nope")
