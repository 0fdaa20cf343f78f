""" "Find similar" for the group builder: rank pool images against a whole group.

Every member counts (their mean vector is the query) and negatives push away (Rocchio).
Sources are pluggable: RELSIM_SIMILARITY_SOURCES lists classes in order of preference and
the first one available serves; a relsim embedding index from the training app slots in
ahead of the weight-free perceptual-hash source that works today."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings
from django.db import connection
from django.utils.module_loading import import_string
from numpy.typing import NDArray

from curation.models import Image

NEGATIVE_WEIGHT = 0.75


@dataclass(frozen=True)
class Match:
    image_id: int
    score: float


class SimilaritySource(Protocol):
    name: str
    description: str

    def available(self) -> bool: ...

    def vectors(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """(image ids, L2-normalised row vectors)."""
        ...


def rank(
    source: SimilaritySource,
    *,
    positives: list[int],
    negatives: list[int] = (),  # type: ignore[assignment]
    exclude: set[int] | None = None,
    k: int = 24,
) -> list[Match]:
    ids, matrix = source.vectors()  # ids sorted ascending
    if not len(ids) or not positives:
        return []

    def rows_of(wanted: list[int]) -> NDArray[np.int64]:
        found = np.searchsorted(ids, wanted)
        found = found[found < len(ids)]
        matches = ids[found] == np.asarray(wanted, dtype=np.int64)[: len(found)]
        rows: NDArray[np.int64] = found[matches]
        return rows

    pos_rows = rows_of(sorted(positives))
    if not len(pos_rows):
        return []
    query = matrix[pos_rows].mean(axis=0)
    neg_rows = rows_of(sorted(negatives))
    if len(neg_rows):
        query = query - NEGATIVE_WEIGHT * matrix[neg_rows].mean(axis=0)
    norm = float(np.linalg.norm(query))
    if norm == 0.0:
        return []
    scores = matrix @ (query / norm)
    skip = set(positives) | set(negatives) | (exclude or set())
    # Only the top few need sorting: partition first, then order that slice.
    wanted = min(len(scores), k + len(skip))
    top = np.argpartition(-scores, wanted - 1)[:wanted]
    top = top[np.lexsort((ids[top], -scores[top]))]
    matches = []
    for row in top:
        image_id = int(ids[row])
        if image_id in skip:
            continue
        matches.append(Match(image_id, float(scores[row])))
        if len(matches) == k:
            break
    return matches


class PerceptualHashSimilarity:
    """Weight-free: cosine between ±1 vectors of the 64-bit perceptual hashes. It finds
    look-alikes rather than shared logic; a trained relsim index replaces it when present."""

    name = "perceptual hash"
    description = "weight-free similarity of 64-bit perceptual hashes (looks, not logic)"
    _lock = threading.Lock()
    _cache: tuple[int, NDArray[np.int64], NDArray[np.float32]] | None = None

    def available(self) -> bool:
        return True

    def vectors(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        # New images raise the highest id; deleted ones are dropped by the caller's lookup.
        stamp = Image.objects.order_by("-id").values_list("id", flat=True).first() or 0
        with self._lock:
            cached = PerceptualHashSimilarity._cache
            if cached is not None and cached[0] == stamp:
                return cached[1], cached[2]
            ids, packed = _HashFile.load_and_extend(stamp, self._hashes)
            # Bits to ±1/8 (±1 over sqrt(64): unit rows), in place: no temporaries as large.
            matrix = np.unpackbits(packed, axis=1).astype(np.float32)
            matrix *= 0.25
            matrix -= 0.125
            PerceptualHashSimilarity._cache = (stamp, ids, matrix)
            return ids, matrix

    @staticmethod
    def _hashes(after: int = 0) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
        """Every image's id (ascending, above `after`) and its hash as a row of 8 bytes.

        Read in table order, which a sequential scan serves about twice as fast as the
        primary key's order, and sorted here. PostgreSQL packs the whole column into two
        byte strings (big-endian ids, hashes decoded from hex), so no Python object is made
        per image."""
        table = connection.ops.quote_name(Image._meta.db_table)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT string_agg(int8send(id), ''::bytea),"
                    f" decode(string_agg(phash, ''), 'hex') FROM {table} WHERE id > %s",
                    [after],
                )
                packed_ids, packed_hashes = cursor.fetchone()
                ids = np.frombuffer(packed_ids or b"", dtype=">i8").astype(np.int64)
                packed = np.frombuffer(packed_hashes or b"", dtype=np.uint8)
            else:
                cursor.execute(f"SELECT id, phash FROM {table} WHERE id > %s", [after])
                rows = cursor.fetchall()
                ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
                hashes = bytes.fromhex("".join(row[1] for row in rows))
                packed = np.frombuffer(hashes, dtype=np.uint8)
        order = np.argsort(ids, kind="stable")
        return ids[order], packed.reshape(len(ids), 8)[order]


class _HashFile:
    """The hashes kept on disk between processes (an image's hash never changes), so a
    process's first "find similar" reads a small file and only the images added since."""

    @staticmethod
    def path() -> Path:
        return Path(settings.DATA_DIR) / "cache" / "phash.npz"

    @classmethod
    def load_and_extend(
        cls, stamp: int, fetch: Callable[[int], tuple[NDArray[np.int64], NDArray[np.uint8]]]
    ) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
        ids = np.zeros(0, dtype=np.int64)
        packed = np.zeros((0, 8), dtype=np.uint8)
        with contextlib.suppress(OSError, ValueError, KeyError), np.load(cls.path()) as stored:
            ids, packed = stored["ids"], stored["hashes"]
        if len(ids) and not cls._matches(ids, packed, stamp):
            # Another database's hashes (a reset or a restored copy): start over.
            ids, packed = ids[:0], packed[:0]
        seen = int(ids[-1]) if len(ids) else 0
        if seen == stamp:
            return ids, packed
        new_ids, new_packed = fetch(seen)
        ids, packed = np.concatenate([ids, new_ids]), np.concatenate([packed, new_packed])
        cls.save(ids, packed)
        return ids, packed

    @staticmethod
    def _matches(ids: NDArray[np.int64], packed: NDArray[np.uint8], stamp: int) -> bool:
        """The file's first and last images still have the hashes it holds."""
        if int(ids[-1]) > stamp:
            return False
        ends = [int(ids[0]), int(ids[-1])]
        stored = dict(Image.objects.filter(pk__in=ends).values_list("id", "phash"))
        held = [packed[0].tobytes().hex(), packed[-1].tobytes().hex()]
        return [str(stored.get(end, "")).lower() for end in ends] == held

    @classmethod
    def save(cls, ids: NDArray[np.int64], packed: NDArray[np.uint8]) -> None:
        target = cls.path()
        with contextlib.suppress(OSError):
            target.parent.mkdir(parents=True, exist_ok=True)
            scratch = target.with_name(f".phash-{os.getpid()}-{threading.get_ident()}.npz")
            np.savez(scratch, ids=ids, hashes=packed)
            scratch.replace(target)


def best_source() -> SimilaritySource:
    for path in settings.RELSIM_SIMILARITY_SOURCES:
        source: SimilaritySource = import_string(path)()
        if source.available():
            return source
    return PerceptualHashSimilarity()
