"""Relation retrieval (P@1, mAP) of every baseline on the synthetic set's held-out test split,
whose shape x colour pairings never occur in training, beside relsim's when a checkpoint is
given. Prints one table and writes the figures to var/bench/baselines.json.

CLIP, DINOv2 and the captioning Qwen2.5-VL are tiny RANDOMLY initialised models here (no hub
access): their rows measure the pipeline, not the pretrained models. Tuned CLIP / DINO are
trained with relsim's loss on the CPU, by default on freshly drawn images as the relsim
benchmark trains relsim (`--tuned-train-from fixed`: the synthetic train split).

Relsim beside the baselines, on the same held-out images: train it with the relsim benchmark,
then point this one at its checkpoint and its data set:

    .venv/bin/python -m benchmarks.relsim_synthetic --time-limit 600
    .venv/bin/python -m benchmarks.baselines_synthetic \
        --relsim var/bench/relsim_synthetic/full/run_.../checkpoint-N \
        --data-dir var/bench/relsim_synthetic/full/synthetic_100_0.25_0
    .venv/bin/python -m benchmarks.baselines_synthetic --quick         # under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

from ml.baselines.registry import BaselineFactory
from ml.baselines.text import CaptionConfig
from ml.baselines.tuned import TunedConfig, train_tuned_baseline
from ml.data.captions import read_split
from ml.search.embedder import Embedder
from ml.search.metrics import evaluate_retrieval
from ml.synthetic.dataset import generate_dataset, read_relation_split
from ml.vlm.backbone import build_tiny_vlm
from ml.vlm.tiny_vision import build_tiny_clip, build_tiny_dinov2

FIXED = (
    "pixels",
    "histogram",
    "phash",
    "dhash",
    "clip-i",
    "dino",
    "clip-t",
    "qwen-t",
    "qwen-t-minilm",
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, short training")
    parser.add_argument("--relsim", type=Path, default=None, help="relsim checkpoint folder")
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench/baselines_synthetic"))
    parser.add_argument("--out", type=Path, default=Path("var/bench/baselines.json"))
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="an existing synthetic set to use"
    )
    # The relsim benchmark's data and training budget (steps, batch, lr, warmup), so that its
    # checkpoints saw the same images and the tuned towers as many updates.
    parser.add_argument("--per-relation", type=int, default=100)
    parser.add_argument("--draw-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=112, help="tiny towers' input side")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tuned-steps", type=int, default=3000)
    parser.add_argument("--tuned-batch", type=int, default=32)
    parser.add_argument("--tuned-lr", type=float, default=1e-3)
    parser.add_argument(
        "--tuned-train-from",
        choices=("stream", "fixed"),
        default="stream",
        help="stream: steps x batch freshly drawn images (as relsim); fixed: the train split",
    )
    parser.add_argument(
        "--tuned-finetune",
        choices=("full", "lora"),
        default="full",
        help="full: the random towers have nothing for LoRA to adapt (as the relsim benchmark)",
    )
    parser.add_argument("--caption-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.per_relation = min(args.per_relation, 24)
        args.tuned_steps = min(args.tuned_steps, 40)
        args.caption_tokens = min(args.caption_tokens, 16)
    return args


def _score(embedder: Embedder, images: list[Image.Image], labels: list[str]) -> dict[str, Any]:
    started = time.monotonic()
    rows = embedder.embed(images)
    seconds = time.monotonic() - started
    scores = evaluate_retrieval(rows, labels)
    return {
        "precision_at_1": scores.precision_at_1,
        "mean_average_precision": scores.mean_average_precision,
        "dim": int(rows.shape[1]),
        "embed_s": seconds,
    }


def _models(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    side = args.image_size
    return {
        "clip": build_tiny_clip(
            work / "tiny_clip",
            seed=args.seed,
            hidden_size=args.hidden,
            num_layers=args.layers,
            num_heads=4,
            intermediate_size=2 * args.hidden,
            projection_dim=args.hidden,
            image_size=side,
        ),
        "dino": build_tiny_dinov2(
            work / "tiny_dino",
            seed=args.seed,
            hidden_size=args.hidden,
            num_layers=args.layers,
            num_heads=4,
            image_size=side,
        ),
        "vlm": build_tiny_vlm(work / "tiny_vlm", seed=args.seed, max_image_size=side),
    }


def _train_tuned(
    kind: str, base: Path, data_dir: Path, work: Path, args: argparse.Namespace
) -> tuple[Path, dict[str, Any]]:
    config = TunedConfig(
        kind=kind,
        base_model=str(base),
        data_dir=str(data_dir),
        synthetic_train_images=(
            args.tuned_steps * args.tuned_batch if args.tuned_train_from == "stream" else 0
        ),
        synthetic_image_size=args.image_size,
        output_dir=str(work / f"tuned_{kind}_{time.strftime('%Y%m%d_%H%M%S')}"),
        finetune=args.tuned_finetune,
        batch_size=args.tuned_batch,
        epochs=10_000,
        max_steps=args.tuned_steps,
        lr=args.tuned_lr,
        warmup_steps=min(50, args.tuned_steps // 10),
        seed=args.seed,
    )

    def report(done: int, total: int, message: str) -> None:
        print(f"  tuned-{kind} [{done}/{total}] {message}", file=sys.stderr, flush=True)

    result = train_tuned_baseline(config, progress=report)
    assert result.checkpoint is not None
    losses = result.losses
    return result.checkpoint, {
        "steps": result.global_step,
        "train_s": result.elapsed_s,
        "first_loss": float(np.mean(losses[:10])),
        "last_loss": float(np.mean(losses[-10:])),
        "finetune": args.tuned_finetune,
        "train_from": args.tuned_train_from,
        "lr": args.tuned_lr,
        "batch_size": args.tuned_batch,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    work = args.work_dir / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir or work / f"synthetic_{args.per_relation}_{args.seed}"
    if not (data_dir / "labels.json").is_file():
        generate_dataset(
            data_dir, seed=args.seed, per_relation=args.per_relation, size=args.draw_size
        )
    test_images, test_labels = read_relation_split(data_dir, "test")
    n_train = len(read_split(data_dir, "train"))
    paths = _models(args, work)

    training: dict[str, dict[str, Any]] = {}
    checkpoints: dict[str, Path] = {}
    for kind in ("clip", "dino"):
        print(f"training tuned-{kind} ...", file=sys.stderr, flush=True)
        checkpoints[kind], training[f"tuned-{kind}"] = _train_tuned(
            kind, paths[kind], data_dir, work, args
        )

    factory = BaselineFactory(
        clip=paths["clip"],
        dino=paths["dino"],
        vlm=paths["vlm"],
        tuned_clip=checkpoints["clip"],
        tuned_dino=checkpoints["dino"],
        relsim=args.relsim,
        device="cpu",
        caption_config=CaptionConfig(
            image_size=args.image_size, max_new_tokens=args.caption_tokens, batch_size=16
        ),
        batch_size=32,
    )
    names = [*FIXED, "tuned-clip", "tuned-dino"] + (["relsim"] if args.relsim else [])
    figures: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"embedding with {name} ...", file=sys.stderr, flush=True)
        figures[name] = _score(factory.make(name), test_images, test_labels)
        figures[name].update(training.get(name, {}))
    counts = np.unique(np.array(test_labels), return_counts=True)[1]
    chance = float(np.sum(counts * (counts - 1)) / (len(test_labels) * (len(test_labels) - 1)))

    notes = {
        "clip-i": "tiny random CLIP",
        "dino": "tiny random DINOv2",
        "clip-t": "tiny random VLM captions -> tiny random CLIP text",
        "qwen-t": "tiny random VLM captions -> tiny random CLIP text (the paper's Qwen-T)",
        "qwen-t-minilm": "tiny random VLM captions -> MiniLM (real)",
        "tuned-clip": f"tiny random CLIP, {args.tuned_finetune} + head, trained",
        "tuned-dino": f"tiny random DINOv2, {args.tuned_finetune} + head, trained",
        "relsim": str(args.relsim),
    }
    print(
        f"synthetic set {data_dir}: {n_train} train / {len(test_labels)} held-out test images, "
        f"{len(set(test_labels))} relations; tiny towers hidden {args.hidden} x {args.layers} "
        f"layers at {args.image_size} px; {args.threads} CPU threads (shared machine)"
    )
    print()
    print(f"{'method (held-out test split)':<14} {'P@1':>6} {'mAP':>6} {'dim':>5}  notes")
    for name, row in figures.items():
        print(
            f"{name:<14} {row['precision_at_1']:>6.3f} {row['mean_average_precision']:>6.3f} "
            f"{row['dim']:>5}  {notes.get(name, 'weight-free')}"
        )
    print(f"{'chance (P@1)':<14} {chance:>6.3f}")
    for name, row in training.items():
        print(
            f"{name}: {row['steps']} steps in {row['train_s']:.0f} s, loss "
            f"{row['first_loss']:.3f} -> {row['last_loss']:.3f}"
        )

    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["-m benchmarks.baselines_synthetic", *(argv or sys.argv[1:])]),
        "data_dir": str(data_dir),
        "n_train": n_train,
        "n_test": len(test_labels),
        "chance_precision_at_1": chance,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "random_weight_models": [
            "clip-i",
            "dino",
            "clip-t",
            "qwen-t",
            "qwen-t-minilm (captioner)",
        ],
        "figures": figures,
        "elapsed_s": time.monotonic() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"figures written to {args.out} ({report['elapsed_s']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
