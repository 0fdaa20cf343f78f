"""Embedding indexes and top-k search, embedding image folders into them, the Embedder interface,
and retrieval metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml.lazy import lazy_exports
from ml.search.embedder import Embedder, l2_normalise
from ml.search.index import ExactIndex, IVFIndex, SearchResult, load_index, write_index
from ml.search.metrics import RetrievalScores, evaluate_retrieval

if TYPE_CHECKING:
    from ml.search.embed import (
        EmbedResult,
        RelsimEmbedder,
        embed_checkpoint,
        embed_files,
        image_files,
    )

# Command modules load on first use (see ml.lazy).
_LAZY = {
    "EmbedResult": "ml.search.embed",
    "RelsimEmbedder": "ml.search.embed",
    "embed_checkpoint": "ml.search.embed",
    "embed_files": "ml.search.embed",
    "image_files": "ml.search.embed",
}

__all__ = [
    "EmbedResult",
    "Embedder",
    "ExactIndex",
    "IVFIndex",
    "RelsimEmbedder",
    "RetrievalScores",
    "SearchResult",
    "embed_checkpoint",
    "embed_files",
    "evaluate_retrieval",
    "image_files",
    "l2_normalise",
    "load_index",
    "write_index",
]

__getattr__ = lazy_exports(__name__, _LAZY)
