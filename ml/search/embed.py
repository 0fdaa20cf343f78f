"""Embed image files in batches into an index folder (embeddings.npy float16 [N, D] with unit
rows, ids.json, meta.json: the format ml.search.index loads), with relsim or any other Embedder.

Command line: `python -m ml.search.embed --checkpoint CKPT --images DIR --out INDEX_DIR`
(`--items FILE` instead of `--images`); the baselines' is `python -m ml.baselines.embed`. Both
report progress on stderr as `[done/total] message`; SIGTERM or SIGINT stop them after the
current batch, and nothing is written then."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from ml.callbacks import ProgressFn, StopFn, ThrottledProgress, never_stop, no_progress
from ml.relsim.model import RelsimModel
from ml.search.embedder import Embedder
from ml.search.index import write_index

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


class RelsimEmbedder:
    """A relsim model behind the common Embedder interface."""

    def __init__(self, model: RelsimModel, *, name: str = "relsim", batch_size: int = 16) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        vectors = self.model.embed_images(images, batch_size=self.batch_size)
        return vectors.numpy().astype(np.float32, copy=False)


@dataclass
class EmbedResult:
    out_dir: Path | None  # None when stopped before the end (nothing is written then)
    count: int
    dim: int
    elapsed_s: float
    stopped: bool


def _open(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image.convert("RGB")


def embed_files(
    embedder: Embedder,
    items: Sequence[tuple[str, str | Path]],
    out_dir: str | Path,
    *,
    batch_size: int = 16,
    meta: dict[str, Any] | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> EmbedResult:
    """Embed `(id, image path)` pairs in order and write the index folder at the end.
    The embedder does its own preprocessing (relsim: centre crop + resize)."""
    started = time.monotonic()
    if not items:
        raise ValueError("no images to embed")
    ids = [item_id for item_id, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids must be unique")
    chunks: list[NDArray[np.float32]] = []
    report = ThrottledProgress(progress)
    for start in range(0, len(items), batch_size):
        if should_stop():
            return EmbedResult(None, start, 0, time.monotonic() - started, stopped=True)
        batch = items[start : start + batch_size]
        chunks.append(embedder.embed([_open(Path(path)) for _, path in batch]))
        done = start + len(batch)
        message = f"embedded {done}/{len(items)} images"
        report(done, len(items), message, force=done == len(items))
    matrix = np.concatenate(chunks)
    info = {
        "embedder": embedder.name,
        "count": int(matrix.shape[0]),
        "dim": int(matrix.shape[1]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(meta or {}),
    }
    folder = write_index(Path(out_dir), ids, matrix, info)
    return EmbedResult(folder, matrix.shape[0], matrix.shape[1], time.monotonic() - started, False)


def image_files(folder: str | Path) -> list[tuple[str, Path]]:
    """(id, path) for the images in a folder, id = file name without suffix, sorted."""
    paths = sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    return [(p.stem, p) for p in paths]


def read_items(path: str | Path) -> list[tuple[str, Path]]:
    """(id, path) pairs from a JSON-lines file of {"id": ..., "path": ...}."""
    items = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append((str(row["id"]), Path(row["path"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}, line {number}: not an {{id, path}} object ({exc})") from None
    return items


def default_device() -> tuple[torch.dtype, str]:
    """bf16 on a GPU, float32 on the CPU."""
    if torch.cuda.is_available():
        return torch.bfloat16, "cuda"
    return torch.float32, "cpu"


def embed_checkpoint(
    checkpoint: str | Path,
    items: Sequence[tuple[str, str | Path]],
    out_dir: str | Path,
    *,
    base_model: str | Path | None = None,
    batch_size: int = 16,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> EmbedResult:
    """Load a relsim checkpoint (ours or the release's) and embed `items` with it."""
    from ml.relsim.checkpoint import load_checkpoint

    dtype, device = default_device()
    model = load_checkpoint(checkpoint, base_model=base_model, dtype=dtype, device=device)
    embedder = RelsimEmbedder(model, batch_size=batch_size)
    meta = {
        "checkpoint": str(Path(checkpoint).resolve()),
        "backbone": model.config.backbone,
        "image_size": model.config.image_size,
    }
    return embed_files(
        embedder,
        items,
        out_dir,
        batch_size=batch_size,
        meta=meta,
        progress=progress,
        should_stop=should_stop,
    )


# One embedding run of a command line: (items, progress, should_stop) -> result.
EmbedRun = Callable[[list[tuple[str, Path]], ProgressFn, StopFn], EmbedResult]


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every embedding command line shares: which images, and where to."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="folder of images; ids = file stems")
    source.add_argument("--items", help='JSON lines of {"id": ..., "path": ...}, in index order')
    parser.add_argument("--out", required=True, help="index folder to write")


def run_command(args: argparse.Namespace, run: EmbedRun) -> int:
    """The rest of an embedding command line: progress on stderr, SIGTERM/SIGINT stop after
    the current batch (exit status 1, nothing written), the index's shape on stdout."""
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def report(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    items = image_files(args.images) if args.images else read_items(args.items)
    result = run(items, report, lambda: stop_requested)
    if result.stopped:
        print(f"stopped after {result.count} images; nothing written", file=sys.stderr)
        return 1
    print(f"{result.count} x {result.dim} -> {result.out_dir}")
    return 0


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Embed a folder of images with relsim.")
    parser.add_argument("--checkpoint", required=True)
    add_source_arguments(parser)
    parser.add_argument("--base-model", default=None, help="backbone folder, if it moved")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    return run_command(
        args,
        lambda items, progress, should_stop: embed_checkpoint(
            args.checkpoint,
            items,
            args.out,
            base_model=args.base_model,
            batch_size=args.batch_size,
            progress=progress,
            should_stop=should_stop,
        ),
    )


if __name__ == "__main__":
    raise SystemExit(_main())
