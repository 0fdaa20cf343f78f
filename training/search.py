"""Search the pool by a pool image, an uploaded image or an anonymous caption's text in the
active relsim index, each baseline's newest index and the perceptual hash, side by side; and
relsim scores of image pairs. Query logic only: the page and the API are in search_views."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from numpy.typing import NDArray

from curation.intake import NormalisedImage
from curation.models import Image
from curation.similarity import PerceptualHashSimilarity
from training.model_paths import text_encoder_path
from training.models import EmbeddingIndex, TrainedModel
from training.similarity import IndexVectors, active_relsim_index

if TYPE_CHECKING:
    from ml.relsim import RelsimModel
    from ml.vlm.text_tower import TextTower

DEFAULT_K = 24
MAX_K = 100
MAX_PAIRS = 1000
# Every caption the tower encodes stays in its memory cache; typed queries never repeat
# enough to be worth keeping forever.
_TEXT_CACHE_LIMIT = 10_000

Ids = NDArray[np.int64]
Rows = NDArray[np.float32]
Vectors = tuple[Ids, Rows]


@dataclass(frozen=True)
class Hit:
    image_id: int
    score: float


@dataclass
class Column:
    """One source's results; `note` says why there are none when that is the case."""

    key: str
    title: str
    description: str
    hits: list[Hit] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class Query:
    """Exactly one of: a pool image, a caption's text, an upload (already validated)."""

    image: Image | None = None
    text: str = ""
    upload: NormalisedImage | None = None

    @property
    def kind(self) -> str:
        if self.image is not None:
            return "image"
        return "upload" if self.upload is not None else "text"


@dataclass
class SearchResults:
    columns: list[Column]
    relsim_index: EmbeddingIndex | None
    # Sources that cannot take this kind of query, said once above the columns.
    skipped: str = ""
    # An uploaded image that is already in the pool.
    pool_twin: Image | None = None


class NoRelsimIndex(Exception):
    """There is no active relsim model with a complete index."""


class NotInIndex(Exception):
    def __init__(self, missing: list[int]) -> None:
        super().__init__(f"not in the index: {missing}")
        self.missing = missing


# --- top-k ---------------------------------------------------------------------------------


def row_of(ids: Ids, image_id: int) -> int | None:
    """The row of an image in ids sorted ascending, or None."""
    row = int(np.searchsorted(ids, image_id))
    return row if row < len(ids) and int(ids[row]) == image_id else None


def top_k(ids: Ids, matrix: Rows, query: Rows, *, k: int, exclude: int | None = None) -> list[Hit]:
    """The k rows of highest cosine with a unit query, best first, ties by lowest image id;
    `exclude` (an image id) never appears."""
    if not len(ids):
        return []
    scores = matrix @ np.asarray(query, dtype=np.float32)
    if exclude is not None:
        row = row_of(ids, exclude)
        if row is not None:
            scores[row] = -np.inf
    # Only the top few need sorting: partition first, then order that slice.
    wanted = min(k, len(scores))
    top = np.argpartition(-scores, wanted - 1)[:wanted]
    top = top[np.lexsort((ids[top], -scores[top]))]
    return [Hit(int(ids[row]), float(scores[row])) for row in top if np.isfinite(scores[row])]


def _unit(vector: NDArray[np.floating]) -> Rows:
    out = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 0 else out


# --- indexes -------------------------------------------------------------------------------


def baseline_indexes() -> list[EmbeddingIndex]:
    """The newest index of each baseline, by baseline name."""
    newest: dict[str, EmbeddingIndex] = {}
    for record in EmbeddingIndex.objects.filter(model__isnull=True).order_by(
        "baseline", "-created_at", "-id"
    ):
        newest.setdefault(record.baseline, record)
    return list(newest.values())


class _BaselineVectors:
    """Baseline index rows, cached per index like training.similarity.IndexVectors (which
    keeps the relsim one, shared with find-similar); only the current baselines are kept."""

    _lock = threading.Lock()
    _cache: dict[int, Vectors] = {}

    @classmethod
    def of(cls, record: EmbeddingIndex, *, keep: set[int]) -> Vectors:
        with cls._lock:
            cached = cls._cache.get(record.pk)
            if cached is not None:
                return cached
            from ml.search import load_index

            index = load_index(Path(record.folder))
            ids = np.asarray([int(item) for item in index.ids], dtype=np.int64)
            order = np.argsort(ids, kind="stable")
            matrix = np.ascontiguousarray(index.vectors(order), dtype=np.float32)
            kept = {pk: v for pk, v in cls._cache.items() if pk in keep}
            cls._cache = {**kept, record.pk: (ids[order], matrix)}
            return cls._cache[record.pk]

    @classmethod
    def clear(cls) -> None:
        with cls._lock:
            cls._cache = {}


def index_vectors(record: EmbeddingIndex, *, keep: set[int] | None = None) -> Vectors:
    """(image ids ascending, float32 unit rows) of an index; raises FileNotFoundError when its
    folder is gone."""
    if not Path(record.folder).is_dir():
        raise FileNotFoundError(record.folder)
    if record.model_id is not None:
        return IndexVectors.of(record)
    return _BaselineVectors.of(record, keep=keep or {record.pk})


def phash_vector(phash: str) -> Rows:
    """A 64-bit perceptual hash as the ±1/8 unit vector PerceptualHashSimilarity compares."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(phash), dtype=np.uint8)).astype(np.float32)
    return (bits * 2.0 - 1.0) / 8.0


# --- models loaded once per process -----------------------------------------------------------

_text_lock = threading.Lock()
_text_tower: tuple[str, TextTower] | None = None
_relsim_lock = threading.Lock()
_relsim_model: tuple[tuple[int, str], RelsimModel] | None = None


def text_vector(text: str) -> Rows:
    """A caption's unit embedding from the text tower (the space relsim images are trained
    into), the tower loaded on first use and kept."""
    global _text_tower
    path = str(text_encoder_path())
    with _text_lock:
        if _text_tower is None or _text_tower[0] != path:
            from ml.vlm.text_tower import TextTower

            _text_tower = (path, TextTower(path))
        tower = _text_tower[1]
        if tower.cached_count() > _TEXT_CACHE_LIMIT:
            tower._memory.clear()
        with _one_torch_thread():
            return _unit(tower.encode([text])[0].numpy())


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """One caption is too small to share out: more torch threads only wait on each other,
    badly so on a busy machine (1 s on two threads against 80 ms on one, measured with both
    cores taken)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def relsim_model(record: TrainedModel) -> RelsimModel:
    """The relsim model of a row on the CPU, loaded on first use; one kept at a time."""
    global _relsim_model
    key = (record.pk, record.folder)
    with _relsim_lock:
        if _relsim_model is None or _relsim_model[0] != key:
            import torch

            from ml.relsim import load_checkpoint

            _relsim_model = None  # the old one goes before the new one loads
            model = load_checkpoint(
                record.folder,
                base_model=record.base_vlm or None,
                dtype=torch.float32,
                device="cpu",
            )
            _relsim_model = (key, model)
        return _relsim_model[1]


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_mb(record: TrainedModel) -> float:
    """The size of a relsim model's weights: its checkpoint folder and, when it is a local
    folder, the base VLM it loads (measured once per process and pair of folders)."""
    return _weights_mb(record.folder, record.base_vlm)


@lru_cache(maxsize=16)
def _weights_mb(*folders: str) -> float:
    total = 0
    for folder in folders:
        path = Path(folder) if folder else None
        if path is None or not path.is_dir():
            continue
        total += sum(
            f.stat().st_size
            for f in path.rglob("*")
            if f.suffix in _WEIGHT_SUFFIXES and f.is_file()
        )
    return total / 2**20


class UploadTooHeavy(ValueError):
    """The model is too large to embed an upload in the web process."""


def upload_vector(record: TrainedModel, upload: NormalisedImage) -> Rows:
    """An uploaded image embedded by the relsim model that made the index, in this process,
    unless its weights are over RELSIM_SEARCH_UPLOAD_MAX_MODEL_MB."""
    import io

    from PIL import Image as PILImage

    limit = settings.RELSIM_SEARCH_UPLOAD_MAX_MODEL_MB
    size = weights_mb(record)
    if size > limit:
        raise UploadTooHeavy(
            f"its weights are {size:,.0f} MB, over the {limit:,} MB that the web process "
            "loads for an upload (RELSIM_SEARCH_UPLOAD_MAX_MODEL_MB). Import the image into "
            "the pool instead: the next index update embeds it on a GPU worker, and then "
            "you can search with it"
        )
    model = relsim_model(record)
    with PILImage.open(io.BytesIO(upload.png)) as opened:
        picture = opened.convert("RGB")
    with _relsim_lock:  # one forward pass at a time: the CPU is shared anyway
        vectors = model.embed_images([picture], batch_size=1)
    return _unit(vectors[0].numpy())


# --- the search ------------------------------------------------------------------------------


def _no_index_note() -> str:
    model = TrainedModel.objects.filter(kind=TrainedModel.Kind.RELSIM, is_active=True).first()
    if model is None:
        return "There is no active relsim model yet."
    return f"The active relsim model ({model.name}) has no index yet: embed the pool with it."


def _relsim_column(
    record: EmbeddingIndex | None,
    query: Query,
    k: int,
    exclude: int | None,
    pool_image: Image | None,
) -> Column:
    if record is None or record.model is None:
        return Column("relsim", "relsim", "", note=_no_index_note())
    column = Column(
        "relsim",
        f"relsim: {record.model.name}",
        f"index #{record.pk} of the active relsim model, {record.count} images (cosine)",
    )
    try:
        ids, matrix = index_vectors(record)
    except FileNotFoundError:
        column.note = f"The index folder {record.folder} is missing."
        return column
    # A pool image (or an upload of one) already embedded: its stored vector, no model load.
    row = row_of(ids, pool_image.pk) if pool_image is not None else None
    if row is not None:
        vector = matrix[row]
    elif query.image is not None:
        column.note = (
            f"Image {query.image.pk} is not in this index (it came after the index was "
            "built): upload its file to search with it, or embed the pool again."
        )
        return column
    else:
        try:
            if query.upload is not None:
                vector = upload_vector(record.model, query.upload)
            else:
                vector = text_vector(query.text)
        except UploadTooHeavy as exc:
            column.note = f"An upload cannot be searched with {record.model.name} here: {exc}."
            return column
        except (OSError, ValueError, ImproperlyConfigured) as exc:
            # A moved checkpoint or text model folder, a bad setting: say it on the page.
            what = "relsim model" if query.upload is not None else "text encoder"
            column.note = f"The {what} could not be loaded: {exc}"
            return column
    if vector.shape[0] != matrix.shape[1]:
        column.note = f"The query has {vector.shape[0]} dimensions, this index {matrix.shape[1]}."
        return column
    column.hits = top_k(ids, matrix, vector, k=k, exclude=exclude)
    return column


def _baseline_column(record: EmbeddingIndex, image: Image, k: int, keep: set[int]) -> Column:
    column = Column(
        f"baseline-{record.pk}",
        f"baseline: {record.baseline}",
        f"index #{record.pk}, {record.count} images (cosine)",
    )
    try:
        ids, matrix = index_vectors(record, keep=keep)
    except FileNotFoundError:
        column.note = f"The index folder {record.folder} is missing."
        return column
    row = row_of(ids, image.pk)
    if row is None:
        column.note = f"Image {image.pk} is not in this index."
        return column
    column.hits = top_k(ids, matrix, matrix[row], k=k, exclude=image.pk)
    return column


def _phash_column(query: Query, k: int, exclude: int | None) -> Column:
    source = PerceptualHashSimilarity()
    column = Column("phash", source.name, source.description + " (cosine of ±1 bits)")
    ids, matrix = source.vectors()
    if query.image is not None:
        vector = phash_vector(query.image.phash)
    else:
        assert query.upload is not None
        vector = phash_vector(query.upload.phash)
    column.hits = top_k(ids, matrix, vector, k=k, exclude=exclude)
    return column


def search(query: Query, *, k: int = DEFAULT_K) -> SearchResults:
    """Top-k of each source that can take the query; the query image never appears."""
    record = active_relsim_index()
    results = SearchResults(columns=[], relsim_index=record)
    exclude = query.image.pk if query.image is not None else None
    if query.upload is not None:
        results.pool_twin = Image.objects.filter(sha256=query.upload.sha256).first()
        if results.pool_twin is not None:
            exclude = results.pool_twin.pk
    # An upload that is already a pool image searches every index as that image.
    pool_image = query.image or results.pool_twin
    results.columns.append(_relsim_column(record, query, k, exclude, pool_image))
    baselines = baseline_indexes()
    if pool_image is not None:
        keep = {b.pk for b in baselines}
        results.columns += [_baseline_column(b, pool_image, k, keep) for b in baselines]
        results.columns.append(_phash_column(query, k, exclude))
    elif query.upload is not None:
        results.columns.append(_phash_column(query, k, exclude))
        if baselines:
            results.skipped = (
                "Baseline indexes take pool images only (their models are not loaded here): "
                "search by a pool image to compare them."
            )
    else:
        results.skipped = (
            "Text goes through the text tower into the relsim index only; the baselines and "
            "the perceptual hash cannot take text."
        )
    return results


# --- relsim as a metric ----------------------------------------------------------------------


def pair_scores(pairs: list[tuple[int, int]]) -> tuple[EmbeddingIndex, list[float]]:
    """relsim similarity (dot product of unit embeddings) of pool image pairs, read from the
    active relsim index. Raises NoRelsimIndex, or NotInIndex naming the missing ids."""
    record = active_relsim_index()
    if record is None:
        raise NoRelsimIndex("There is no active relsim model with an index yet.")
    try:
        ids, matrix = index_vectors(record)
    except FileNotFoundError:
        raise NoRelsimIndex(
            f"The active relsim index's folder {record.folder} is missing."
        ) from None
    wanted = sorted({image_id for pair in pairs for image_id in pair})
    rows = {image_id: row_of(ids, image_id) for image_id in wanted}
    missing = [image_id for image_id, row in rows.items() if row is None]
    if missing:
        raise NotInIndex(missing)
    first = np.asarray([rows[a] for a, _ in pairs], dtype=np.int64)
    second = np.asarray([rows[b] for _, b in pairs], dtype=np.int64)
    scores = np.einsum("ij,ij->i", matrix[first], matrix[second])
    return record, [float(s) for s in scores]


def clear_index_caches() -> None:
    """Forget loaded index rows (tests, where a rolled-back id can come back)."""
    _BaselineVectors.clear()
    with IndexVectors._lock:
        IndexVectors._cache = {}
