from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ml.relsim.checkpoint import save_checkpoint
from ml.relsim.model import RelsimConfig, build_relsim_model
from ml.search.embed import RelsimEmbedder, embed_checkpoint, embed_files, image_files
from ml.search.index import load_index
from tests.ml.conftest import TINY_IMAGE_SIZE, draw_image


def _image_folder(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        draw_image(i).save(folder / f"img{i:02d}.png")
    return folder


def test_it_writes_the_index_files_search_reads(tiny_backbone: Path, tmp_path: Path) -> None:
    model = build_relsim_model(
        RelsimConfig(backbone=str(tiny_backbone), image_size=TINY_IMAGE_SIZE)
    )
    items = image_files(_image_folder(tmp_path / "images", 5))
    reports: list[int] = []
    result = embed_files(
        RelsimEmbedder(model),
        items,
        tmp_path / "index",
        batch_size=2,
        progress=lambda done, total, message: reports.append(done),
    )
    assert result.out_dir == tmp_path / "index" and (result.count, result.dim) == (5, 384)
    matrix = np.load(tmp_path / "index" / "embeddings.npy")
    assert matrix.dtype == np.float16 and matrix.shape == (5, 384)
    assert np.allclose(np.linalg.norm(matrix.astype(np.float32), axis=1), 1.0, atol=1e-2)
    assert json.loads((tmp_path / "index" / "ids.json").read_text()) == [
        f"img{i:02d}" for i in range(5)
    ]
    assert json.loads((tmp_path / "index" / "meta.json").read_text())["embedder"] == "relsim"
    # Rows match embedding the same images directly, in the same order.
    direct = model.embed_images([Image.open(path) for _, path in items])
    assert np.allclose(matrix.astype(np.float32), direct.numpy(), atol=2e-3)
    assert reports[-1] == 5
    index = load_index(tmp_path / "index")
    assert index is not None


def test_embedding_from_a_checkpoint_and_stopping_early(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    model = build_relsim_model(
        RelsimConfig(backbone=str(tiny_backbone), image_size=TINY_IMAGE_SIZE)
    )
    checkpoint = save_checkpoint(model, tmp_path / "ckpt")
    items = image_files(_image_folder(tmp_path / "images", 3))
    result = embed_checkpoint(checkpoint, items, tmp_path / "index", batch_size=2)
    stored = np.load(tmp_path / "index" / "embeddings.npy").astype(np.float32)
    expected = model.embed_images([Image.open(path) for _, path in items]).numpy()
    assert result.count == 3 and np.allclose(stored, expected, atol=2e-3)
    meta = json.loads((tmp_path / "index" / "meta.json").read_text())
    assert meta["image_size"] == TINY_IMAGE_SIZE and meta["checkpoint"].endswith("ckpt")

    stopped = embed_files(
        RelsimEmbedder(model), items, tmp_path / "partial", batch_size=1, should_stop=lambda: True
    )
    assert stopped.stopped and stopped.out_dir is None
    assert not (tmp_path / "partial" / "embeddings.npy").exists()
    assert torch.is_tensor(model.embed_images([]))
