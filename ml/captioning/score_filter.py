"""Score image files with a saved interest filter: P("Yes") per image, written as JSON lines
`{"id": ..., "score": ...}` batch by batch, so a run that is stopped keeps what it scored.

Command line: `python -m ml.captioning.score_filter --checkpoint DIR --items FILE --out FILE`,
items one `{"id": ..., "path": ...}` a line; progress as `[done/total] message` on stderr;
SIGTERM or SIGINT stop after the current batch."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import torch
from PIL import Image

from ml.callbacks import ProgressFn, StopFn, ThrottledProgress, never_stop, no_progress
from ml.captioning.interest_filter import InterestFilter, load_filter, score_images
from ml.data.images import load_image


@dataclass
class ScoreResult:
    out_path: Path
    scored: int
    skipped: list[str]  # ids whose image could not be read
    total: int
    stopped: bool
    elapsed_s: float


def read_items(path: str | Path) -> list[tuple[str, Path]]:
    """(id, path) pairs from a JSON-lines file of {"id": ..., "path": ...}."""
    items: list[tuple[str, Path]] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append((str(row["id"]), Path(row["path"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}, line {number}: not an {{id, path}} object ({exc})") from None
    return items


def score_files(
    model: InterestFilter,
    items: Sequence[tuple[str, str | Path]],
    out_path: str | Path,
    *,
    batch_size: int = 16,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> ScoreResult:
    """Score `(id, image path)` pairs in order, appending each batch's scores to `out_path`
    (written afresh). An image that cannot be read is skipped and named in the result: one
    bad file must not stop a pass over a whole pool."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    ids = [item_id for item_id, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids must be unique")
    started = time.monotonic()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = ThrottledProgress(progress)
    scored = 0
    skipped: list[str] = []
    stopped = False
    total = len(items)
    with out.open("w", encoding="utf-8") as handle:
        for start in range(0, total, batch_size):
            if should_stop():
                stopped = True
                break
            readable: list[tuple[str, Image.Image]] = []
            for item_id, path in items[start : start + batch_size]:
                try:
                    readable.append((item_id, load_image(path, model.config.image_size)))
                except (OSError, ValueError) as exc:
                    skipped.append(item_id)
                    print(f"skipped {item_id}: cannot read {path} ({exc})", file=sys.stderr)
            if readable:
                scores = score_images(
                    model,
                    [image for _, image in readable],
                    batch_size=batch_size,
                    preprocessed=True,
                )
                handle.write(
                    "".join(
                        json.dumps({"id": item_id, "score": round(score, 6)}) + "\n"
                        for (item_id, _), score in zip(readable, scores, strict=True)
                    )
                )
                handle.flush()
                scored += len(scores)
            done = min(start + batch_size, total)
            # The first batch is reported at once: it says the model loaded and runs.
            report(
                done, total, f"scored {done} of {total} images", force=start == 0 or done == total
            )
    return ScoreResult(out, scored, skipped, total, stopped, time.monotonic() - started)


def default_device() -> tuple[torch.dtype, str]:
    """bf16 on a GPU, float32 on the CPU."""
    if torch.cuda.is_available():
        return torch.bfloat16, "cuda"
    return torch.float32, "cpu"


def score_checkpoint(
    checkpoint: str | Path,
    items: Sequence[tuple[str, str | Path]],
    out_path: str | Path,
    *,
    base_model: str | Path | None = None,
    batch_size: int = 16,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> ScoreResult:
    """Load a saved filter and score `items` with it."""
    dtype, device = default_device()
    model = load_filter(checkpoint, base_model=base_model, dtype=dtype, device=device)
    return score_files(
        model,
        items,
        out_path,
        batch_size=batch_size,
        progress=progress,
        should_stop=should_stop,
    )


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score images with a relational-interest filter.")
    parser.add_argument("--checkpoint", required=True, help="a saved filter folder")
    parser.add_argument("--items", required=True, help='JSON lines of {"id": ..., "path": ...}')
    parser.add_argument("--out", required=True, help='JSON lines of {"id": ..., "score": ...}')
    parser.add_argument("--base-model", default=None, help="backbone folder, if it moved")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def report(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    result = score_checkpoint(
        args.checkpoint,
        read_items(args.items),
        args.out,
        base_model=args.base_model,
        batch_size=args.batch_size,
        progress=report,
        should_stop=lambda: stop_requested,
    )
    summary = {**asdict(result), "out_path": str(result.out_path)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
