"""Embed image files into an index folder with one of the registry's baselines, in the format
and with the command-line behaviour of ml.search.embed (items file, progress, SIGTERM).

Command line: `python -m ml.baselines.embed --baseline NAME --items FILE --out INDEX_DIR` with
the folders the baseline loads (`--clip`, `--dino`, `--vlm`, `--text-model`, `--tuned-clip`,
`--tuned-dino`); the weight-free ones (pixels, histogram, phash, dhash) need none."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from ml.baselines.registry import BaselineFactory
from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress
from ml.search.baseline_models import (
    BASELINE_MODELS,
    CHECKPOINT_MODELS,
    MODEL_KEYS,
    baseline_models,
)
from ml.search.embed import (
    EmbedResult,
    add_source_arguments,
    default_device,
    embed_files,
    run_command,
)

__all__ = ["embed_baseline"]


def embed_baseline(
    name: str,
    items: Sequence[tuple[str, str | Path]],
    out_dir: str | Path,
    *,
    models: Mapping[str, str | Path | None] | None = None,
    batch_size: int = 32,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> EmbedResult:
    """Embed `items` with the baseline `name` of ml.baselines.registry. `models` gives the
    folders it loads (BaselineFactory's arguments: clip, dino, vlm, text_model, tuned_clip,
    tuned_dino); a model left out falls back to the registry's default, the paper's hub name
    (found only in a local cache). The weight-free baselines need none."""
    needs = baseline_models(name)
    given = {key: value for key, value in (models or {}).items() if value}
    unknown = sorted(set(given) - set(MODEL_KEYS))
    if unknown:
        raise ValueError(f"unknown model folder argument(s): {', '.join(unknown)}")
    missing = [key for key in needs if key in CHECKPOINT_MODELS and key not in given]
    if missing:
        raise ValueError(f"baseline {name!r} needs a {missing[0]} checkpoint folder")
    dtype, device = default_device()
    used = {key: given[key] for key in needs if key in given}
    factory = BaselineFactory(
        clip=used.get("clip"),
        dino=used.get("dino"),
        vlm=used.get("vlm"),
        text_model=used.get("text_model"),
        tuned_clip=used.get("tuned_clip"),
        tuned_dino=used.get("tuned_dino"),
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )
    embedder = factory.make(name)
    # The folders are recorded so that a later run can tell whether these rows still match.
    meta = {"baseline": name, "models": {key: str(value) for key, value in used.items()}}
    return embed_files(
        embedder,
        items,
        out_dir,
        batch_size=batch_size,
        meta=meta,
        progress=progress,
        should_stop=should_stop,
    )


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Embed images with a retrieval baseline.")
    parser.add_argument(
        "--baseline",
        required=True,
        help=", ".join(
            f"{name} ({' + '.join(needs) or 'weight-free'})"
            for name, needs in BASELINE_MODELS.items()
        ),
    )
    add_source_arguments(parser)
    for key in MODEL_KEYS:
        parser.add_argument(_option(key), default=None, help=f"the {key} folder")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        needs = baseline_models(args.baseline)
    except ValueError as exc:
        parser.error(str(exc))
    models = {key: getattr(args, key) for key in MODEL_KEYS}
    missing = [key for key in needs if key in CHECKPOINT_MODELS and not models[key]]
    if missing:
        parser.error(f"--baseline {args.baseline} needs {_option(missing[0])} FOLDER")
    return run_command(
        args,
        lambda items, progress, should_stop: embed_baseline(
            args.baseline,
            items,
            args.out,
            models=models,
            batch_size=args.batch_size,
            progress=progress,
            should_stop=should_stop,
        ),
    )


if __name__ == "__main__":
    raise SystemExit(_main())
