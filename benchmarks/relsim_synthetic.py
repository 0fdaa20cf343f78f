"""Does relsim learn relations? Train a tiny Qwen2.5-VL relsim on the CPU and compare relation
retrieval (P@1, mAP) on held-out synthetic images - whose shape x colour pairings never occur in
training - against the weight-free attribute baselines. Prints a table and a learning curve.

By default every training image is freshly drawn (ml.synthetic.SyntheticStream: steps x batch
images, none seen twice) and the backbone's linear layers get a fan-in scaled init; the fixed
set's own train split (`--train-images 0`) overfits long before the relations are learnt.

    .venv/bin/python -m benchmarks.relsim_synthetic            # full run (6-15 minutes: CPU load)
    .venv/bin/python -m benchmarks.relsim_synthetic --quick    # smoke run (about a minute)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from ml.baselines.attributes import attribute_baselines
from ml.relsim.checkpoint import load_checkpoint
from ml.relsim.train import TrainConfig, train_relsim
from ml.search.metrics import evaluate_retrieval
from ml.synthetic.dataset import generate_dataset, read_relation_split
from ml.vlm.backbone import build_tiny_vlm


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, few steps")
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench/relsim_synthetic"))
    parser.add_argument(
        "--per-relation", type=int, default=100, help="images per relation in the fixed set"
    )
    parser.add_argument(
        "--test-fraction", type=float, default=0.25, help="held-out share of the fixed set"
    )
    parser.add_argument(
        "--train-images",
        type=int,
        default=None,
        help="train on this many freshly drawn images (default: steps x batch, so none "
        "repeats); 0 trains on the fixed set's train split instead",
    )
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--temperature", type=float, default=0.07)
    parser.add_argument(
        "--init",
        choices=("fan-in", "qwen"),
        default="fan-in",
        help="backbone linear layers: PyTorch's fan-in scaled init, or Qwen's normal(0, 0.02)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=None, help="stop training after this many seconds"
    )
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument("--text-model", default=None, help="default: all-MiniLM-L6-v2")
    parser.add_argument("--text-cache", default=None, help="caption embedding cache folder")
    parser.add_argument("--curve-points", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vision-hidden", type=int, default=64)
    parser.add_argument("--vision-depth", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.per_relation = min(args.per_relation, 24)
        args.steps = min(args.steps, 40)
        args.curve_points = min(args.curve_points, 2)
    if args.train_images is None:
        args.train_images = args.steps * args.batch_size
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    work = args.work_dir / ("quick" if args.quick else "full")
    data_dir = work / f"synthetic_{args.per_relation}_{args.test_fraction}_{args.seed}"
    if not (data_dir / "labels.json").is_file():
        generate_dataset(
            data_dir,
            seed=args.seed,
            per_relation=args.per_relation,
            size=224,
            test_fraction=args.test_fraction,
        )
    backbone = build_tiny_vlm(
        work / "tiny_backbone",
        seed=args.seed,
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=4,
        num_kv_heads=2,
        vision_hidden_size=args.vision_hidden,
        vision_depth=args.vision_depth,
        vision_heads=4,
        max_image_size=args.image_size,
        init=args.init,
    )
    run_dir = work / f"run_{time.strftime('%Y%m%d_%H%M%S')}"
    save_every = max(1, args.steps // args.curve_points)
    config = TrainConfig(
        data_dir=str(data_dir),
        synthetic_train_images=args.train_images,
        output_dir=str(run_dir),
        backbone=str(backbone),
        image_size=args.image_size,
        # A random tiny backbone has nothing to adapt: train all of it, vision tower included.
        finetune="full",
        freeze_vision=False,
        batch_size=args.batch_size,
        epochs=10_000,
        max_steps=args.steps,
        lr=args.lr,
        warmup_steps=args.warmup,
        temperature=args.temperature,
        text_model=args.text_model,
        text_cache_dir=args.text_cache,
        num_workers=args.workers,
        save_every=save_every,
        log_every=10,
        seed=args.seed,
        batched_vision_attention=True,
    )
    started = time.monotonic()
    limit = args.time_limit
    result = train_relsim(
        config,
        should_stop=lambda: limit is not None and time.monotonic() - started > limit,
    )
    train_s = time.monotonic() - started

    test_images, test_labels = read_relation_split(data_dir, "test")
    train_images, train_labels = read_relation_split(data_dir, "train")
    rows: list[tuple[str, float, float]] = []
    curve: list[tuple[int, float, float]] = []
    for checkpoint in sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        model = load_checkpoint(checkpoint)
        scores = evaluate_retrieval(
            model.embed_images(test_images, batch_size=64).numpy(), test_labels
        )
        curve.append(
            (
                int(checkpoint.name.split("-")[1]),
                scores.precision_at_1,
                scores.mean_average_precision,
            )
        )
    final = curve[-1]
    rows.append((f"relsim (tiny, {final[0]} steps)", final[1], final[2]))
    final_model = load_checkpoint(run_dir / f"checkpoint-{final[0]}")
    fit = evaluate_retrieval(
        final_model.embed_images(train_images, batch_size=64).numpy(), train_labels
    )
    for baseline in attribute_baselines():
        scores = evaluate_retrieval(baseline.embed(test_images), test_labels)
        rows.append((baseline.name, scores.precision_at_1, scores.mean_average_precision))
    counts = np.unique(np.array(test_labels), return_counts=True)[1]
    chance = float(np.sum(counts * (counts - 1)) / (len(test_labels) * (len(test_labels) - 1)))

    metrics = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    print(
        f"synthetic set: {len(train_labels)} train / {len(test_labels)} held-out test images, "
        f"{len(set(test_labels))} relations, image size {args.image_size} px"
    )
    print(
        f"tiny backbone: LLM hidden {args.hidden} x {args.layers} layers, vision hidden "
        f"{args.vision_hidden} x {args.vision_depth} blocks; full fine-tuning, lr {args.lr}, "
        f"batch {args.batch_size}, {args.threads} CPU threads"
    )
    data = (
        f"{args.train_images} freshly drawn images (none seen twice)"
        if args.train_images
        else f"the fixed set's {len(train_labels)} train images"
    )
    loop_s = metrics[-1]["elapsed_s"]
    print(
        f"training on {data}: {result.global_step} steps in {train_s:.0f} s wall "
        f"({loop_s:.0f} s in the loop, {loop_s / max(1, result.global_step):.2f} s per step), "
        f"final loss {metrics[-1]['loss']:.3f}"
    )
    print()
    print(f"{'method (held-out test split)':<34} {'P@1':>6} {'mAP':>6}")
    for name, p1, m_ap in rows:
        print(f"{name:<34} {p1:>6.3f} {m_ap:>6.3f}")
    print(f"{'chance (P@1)':<34} {chance:>6.3f}")
    # Streamed runs never see the fixed set's train images: there they measure seen pairings.
    fit_name = (
        "relsim on train-split pairings" if args.train_images else "relsim on its train split"
    )
    print(f"{fit_name:<34} {fit.precision_at_1:>6.3f} {fit.mean_average_precision:>6.3f}")
    print()
    print("learning curve (held-out test split)")
    print(f"{'step':>6} {'images':>7} {'time s':>7} {'P@1':>6} {'mAP':>6} {'train loss':>10}")
    logged = {row["step"]: row for row in metrics}
    for step, p1, m_ap in curve:
        row = logged[min(logged, key=lambda s: abs(s - step))]
        print(
            f"{step:>6} {step * args.batch_size:>7} {row['elapsed_s']:>7.0f} "
            f"{p1:>6.3f} {m_ap:>6.3f} {row['loss']:>10.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
