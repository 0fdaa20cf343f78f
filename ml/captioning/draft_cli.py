"""Draft anonymous captions with a saved captioner: one caption per item, where an item is a
group's images in one prompt or a single image, written as JSON lines item by item so a run
that is stopped keeps what it drafted.

Command line: `python -m ml.captioning.draft_cli --checkpoint DIR --items FILE --out FILE`,
items one `{"id": ..., "paths": [image, ...]}` a line; out lines
`{"id", "caption", "prompt_version", "raw", "usable", "problems", "n_images"}`; progress as
`[done/total] message` on stderr; SIGTERM or SIGINT stop after the current item."""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType

from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress
from ml.captioning.captioner import (
    Captioner,
    GenerationSettings,
    caption_groups,
    load_captioner,
)
from ml.captioning.score_filter import default_device
from ml.data.images import load_image


@dataclass(frozen=True)
class DraftItem:
    """What one caption is drafted from: one image, or the images of one group."""

    item_id: str
    paths: tuple[Path, ...]


@dataclass
class DraftResult:
    out_path: Path
    drafted: int
    skipped: list[str]  # ids with an image that could not be read
    total: int
    stopped: bool
    elapsed_s: float


def read_draft_items(path: str | Path) -> list[DraftItem]:
    """Items from a JSON-lines file of {"id": ..., "paths": [...]}; ids must be unique."""
    items: list[DraftItem] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            paths = row["paths"]
            if not isinstance(paths, list) or not paths:
                raise TypeError("'paths' must be a non-empty list")
            items.append(DraftItem(str(row["id"]), tuple(Path(p) for p in paths)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}, line {number}: not an {{id, paths}} object ({exc})"
            ) from None
    ids = [item.item_id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: item ids must be unique")
    return items


def draft_captions(
    captioner: Captioner,
    items: Sequence[DraftItem],
    out_path: str | Path,
    *,
    settings: GenerationSettings | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> DraftResult:
    """Draft one caption per item, in order, appending each line to `out_path` (written
    afresh). An item with an unreadable image is skipped and named: one bad file must not
    stop a pass over thousands of groups."""
    started = time.monotonic()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    drafted = 0
    skipped: list[str] = []
    stopped = False
    total = len(items)
    size = captioner.config.image_size
    with out.open("w", encoding="utf-8") as handle:
        for done, item in enumerate(items, start=1):
            if should_stop():
                stopped = True
                break
            try:
                images = [load_image(path, size) for path in item.paths]
            except (OSError, ValueError) as exc:
                skipped.append(item.item_id)
                print(f"skipped {item.item_id}: cannot read an image ({exc})", file=sys.stderr)
            else:
                # Each item its own seed: one seed for all would draw every caption alike.
                # caption_groups restores the random state it found, so without a seed every
                # item would also start from the same state: a fresh seed is drawn instead.
                chosen = settings or GenerationSettings()
                base = chosen.seed if chosen.seed is not None else secrets.randbits(31)
                own = replace(chosen, seed=base + done - 1)
                [result] = caption_groups(captioner, [images], settings=own, preprocessed=True)
                row = {
                    "id": item.item_id,
                    "caption": result.text,
                    "prompt_version": result.prompt_version,
                    "raw": result.raw,
                    "usable": result.usable,
                    "problems": result.problems,
                    "n_images": result.n_images,
                }
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                handle.flush()
                drafted += 1
            progress(done, total, f"drafted {done} of {total}")
    return DraftResult(out, drafted, skipped, total, stopped, time.monotonic() - started)


def draft_checkpoint(
    checkpoint: str | Path,
    items: Sequence[DraftItem],
    out_path: str | Path,
    *,
    base_model: str | Path | None = None,
    settings: GenerationSettings | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> DraftResult:
    """Load a saved captioner and draft `items` with it."""
    dtype, device = default_device()
    captioner = load_captioner(checkpoint, base_model=base_model, dtype=dtype, device=device)
    return draft_captions(
        captioner, items, out_path, settings=settings, progress=progress, should_stop=should_stop
    )


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draft anonymous captions with a captioner.")
    parser.add_argument("--checkpoint", required=True, help="a saved captioner folder")
    parser.add_argument("--items", required=True, help='JSON lines of {"id": ..., "paths": [...]}')
    parser.add_argument("--out", required=True, help='JSON lines of {"id": ..., "caption": ...}')
    parser.add_argument("--base-model", default=None, help="backbone folder, if it moved")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--greedy", action="store_true", help="no sampling")
    parser.add_argument("--seed", type=int, default=None, help="fix the sampling stream")
    args = parser.parse_args(argv)
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def report(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    settings = GenerationSettings(
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        greedy=args.greedy,
        seed=args.seed,
    )
    result = draft_checkpoint(
        args.checkpoint,
        read_draft_items(args.items),
        args.out,
        base_model=args.base_model,
        settings=settings,
        progress=report,
        should_stop=lambda: stop_requested,
    )
    print(json.dumps({**asdict(result), "out_path": str(result.out_path)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
