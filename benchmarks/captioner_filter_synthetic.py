"""Do the captioner and the interest filter learn? On the synthetic relational set, a tiny
Qwen2.5-VL captioner trained on single images and seed groups should write the right relation's
caption template for held-out images (exact-template rate; group drafting from 3 images should
beat single images), and a tiny filter trained on relational vs unstructured clutter images
should separate them (ROC AUC) with a threshold that hits a requested keep-rate.
Prints a table and writes the figures as JSON.

By default both train on freshly drawn images (ml.captioning.synthetic_samples: no image
seen twice) from a backbone with fan-in scaled init, as the relsim benchmark does;
`--train-from fixed` trains on the fixed set's train split instead, which a tiny model
overfits before it learns much.
The filter is tuned from the trained captioner's weights, the tiny stand-in for a pretrained
VLM (`--filter-start scratch`: from the untrained backbone).

    .venv/bin/python -m benchmarks.captioner_filter_synthetic            # full run (~25 min)
    .venv/bin/python -m benchmarks.captioner_filter_synthetic --quick    # smoke run
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import io
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

from ml.captioning.captioner import GenerationSettings, caption_groups, load_captioner
from ml.captioning.captioner_training import CaptionerTrainConfig, train_captioner
from ml.captioning.filter_training import FilterTrainConfig, train_filter
from ml.captioning.interest_filter import (
    FILTER,
    choose_threshold,
    load_filter,
    roc_auc,
    score_images,
)
from ml.captioning.prompts import PROMPT_VERSION, PROMPTS, CaptionPrompt
from ml.data.captions import read_split
from ml.synthetic.clutter import draw_clutter
from ml.synthetic.dataset import RELATIONS, generate_dataset, read_labels, read_relation_split
from ml.vlm.backbone import build_tiny_vlm
from ml.vlm.tuned import export_backbone

# A one-line prompt for cheap CPU runs: the tiny tokenizer spells the real prompt out in ~330
# tokens, which would triple the cost of every step while telling a tiny model nothing.
SHORT_PROMPT = CaptionPrompt(
    version="bench/short-v1",
    single="Anonymous caption of this image:",
    group="Anonymous caption shared by these {count} images:",
)
TEMPLATES = {relation.name: relation.caption for relation in RELATIONS}
GREEDY = GenerationSettings(greedy=True, max_new_tokens=64)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, few steps")
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench/captioner_filter"))
    parser.add_argument("--out", type=Path, default=Path("var/bench/captioner_filter.json"))
    parser.add_argument("--per-relation", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--prompt", choices=["short", "full"], default="short")
    parser.add_argument(
        "--train-from",
        choices=("stream", "fixed"),
        default="stream",
        help="stream: every training image freshly drawn (none seen twice); fixed: the fixed "
        "set's train split (and a fixed set of clutter for the filter)",
    )
    parser.add_argument(
        "--init",
        choices=("fan-in", "qwen"),
        default="fan-in",
        help="backbone linear layers: PyTorch's fan-in scaled init, or Qwen's normal(0, 0.02)",
    )
    parser.add_argument("--captioner-steps", type=int, default=2500)
    parser.add_argument("--filter-steps", type=int, default=1500)
    parser.add_argument("--captioner-time-limit", type=float, default=None, help="seconds")
    parser.add_argument("--filter-time-limit", type=float, default=None, help="seconds")
    parser.add_argument(
        "--filter-start",
        choices=("captioner", "scratch"),
        default="captioner",
        help="captioner: tune the filter from the trained captioner's weights (our stand-in "
        "for a pretrained VLM: it has seen relations, never clutter or a yes/no question); "
        "scratch: from the untrained backbone",
    )
    parser.add_argument("--group-share", type=float, default=0.5, help="group samples (stream)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--filter-lr", type=float, default=5e-4)
    parser.add_argument("--clutter-per-relational", type=int, default=4, help="train no:yes")
    parser.add_argument("--filter-yes-per-relation", type=int, default=12)
    parser.add_argument("--keep-rate", type=float, default=0.25)
    parser.add_argument("--curve-points", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-workers", type=int, default=0, help="image loading processes")
    parser.add_argument("--device", default="auto", help="evaluation device (auto: cuda if any)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vision-hidden", type=int, default=64)
    parser.add_argument("--vision-depth", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.per_relation = min(args.per_relation, 16)
        args.captioner_steps = min(args.captioner_steps, 30)
        args.filter_steps = min(args.filter_steps, 20)
        args.filter_yes_per_relation = min(args.filter_yes_per_relation, 6)
        args.curve_points = min(args.curve_points, 2)
    return args


def _nearest_template(text: str) -> str:
    return max(
        TEMPLATES,
        key=lambda name: difflib.SequenceMatcher(None, text, TEMPLATES[name]).ratio(),
    )


def _caption_scores(texts: list[str], relations: list[str]) -> dict[str, float]:
    exact = [t == TEMPLATES[r] for t, r in zip(texts, relations, strict=True)]
    nearest = [_nearest_template(t) == r for t, r in zip(texts, relations, strict=True)]
    return {
        "exact_template_rate": float(np.mean(exact)),
        "nearest_template_rate": float(np.mean(nearest)),
    }


def _test_groups(
    images: list[Image.Image], relations: list[str], size: int, seed: int
) -> tuple[list[list[Image.Image]], list[str]]:
    """Disjoint groups of `size` held-out images of one relation each."""
    rng = random.Random(f"groups/{seed}")
    groups, group_relations = [], []
    for name in TEMPLATES:
        members = [i for i, r in enumerate(relations) if r == name]
        rng.shuffle(members)
        for start in range(0, len(members) - size + 1, size):
            groups.append([images[i] for i in members[start : start + size]])
            group_relations.append(name)
    return groups, group_relations


def _write_filter_data(folder: Path, data_dir: Path, args: argparse.Namespace) -> Path:
    """labels.jsonl: relational train images (yes) and clutter (no) at the requested ratio."""
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    labels = read_labels(data_dir)
    rows: list[dict[str, str]] = []
    per_relation: dict[str, int] = {}
    for record in read_split(data_dir, "train"):
        relation = labels[record.image_hash].relation
        if per_relation.get(relation, 0) < args.filter_yes_per_relation:
            per_relation[relation] = per_relation.get(relation, 0) + 1
            rows.append({"image": str(record.image_path.resolve()), "label": "yes"})
    for n in range(len(rows) * args.clutter_per_relational):
        buffer = io.BytesIO()
        draw_clutter(f"train/{n}", args.image_size, "train").save(buffer, format="PNG")
        digest = hashlib.md5(buffer.getvalue()).hexdigest()
        (images_dir / f"{digest}.png").write_bytes(buffer.getvalue())
        rows.append({"image_hash": digest, "label": "no"})
    path = folder / "labels.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _time_limit(seconds: float | None) -> Callable[[], bool]:
    started = time.monotonic()
    return lambda: seconds is not None and time.monotonic() - started > seconds


def _checkpoints(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def _losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {row["step"]: row["loss"] for row in map(json.loads, lines)}


def _run_captioner(
    args: argparse.Namespace, work: Path, data_dir: Path, backbone: Path
) -> dict[str, Any]:
    prompt_version = SHORT_PROMPT.version if args.prompt == "short" else PROMPT_VERSION
    run_dir = work / f"captioner_{time.strftime('%Y%m%d_%H%M%S')}"
    stream = args.train_from == "stream"
    config = CaptionerTrainConfig(
        data_dir="" if stream else str(data_dir),
        synthetic_train_samples=args.captioner_steps * args.batch_size if stream else 0,
        synthetic_group_share=args.group_share,
        output_dir=str(run_dir),
        backbone=str(backbone),
        image_size=args.image_size,
        prompt_version=prompt_version,
        # A random tiny backbone has nothing to adapt: train all of it, vision tower included.
        finetune="full",
        freeze_vision=False,
        group_min_images=2,
        group_max_images=4,
        batch_size=args.batch_size,
        epochs=10_000,
        max_steps=args.captioner_steps,
        lr=args.lr,
        warmup_steps=min(50, args.captioner_steps // 10),
        weight_decay=0.0,
        save_every=max(1, args.captioner_steps // args.curve_points),
        log_every=10,
        seed=args.seed,
        num_workers=args.num_workers,
    )
    started = time.monotonic()
    result = train_captioner(config, should_stop=_time_limit(args.captioner_time_limit))
    train_s = time.monotonic() - started

    test_images, test_relations = read_relation_split(data_dir, "test")
    groups, group_relations = _test_groups(test_images, test_relations, args.group_size, args.seed)
    losses = _losses(run_dir)
    curve = []
    final: dict[str, Any] = {}
    for checkpoint in _checkpoints(run_dir):
        step = int(checkpoint.name.split("-")[1])
        captioner = load_captioner(checkpoint, device=args.device)
        started = time.monotonic()
        singles = caption_groups(
            captioner, [[image] for image in test_images], settings=GREEDY, batch_size=64
        )
        drafted = caption_groups(captioner, groups, settings=GREEDY, batch_size=32)
        eval_s = time.monotonic() - started
        single_scores = _caption_scores([r.text for r in singles], test_relations)
        group_scores = _caption_scores([r.text for r in drafted], group_relations)
        near = min(losses, key=lambda s: abs(s - step))
        curve.append(
            {
                "step": step,
                "train_loss": losses[near],
                "single": single_scores,
                "group": group_scores,
                "usable_rate": float(np.mean([r.usable for r in singles])),
            }
        )
        final = {
            "per_relation_exact": {
                name: float(
                    np.mean(
                        [
                            r.text == TEMPLATES[name]
                            for r, rel in zip(singles, test_relations, strict=True)
                            if rel == name
                        ]
                    )
                )
                for name in TEMPLATES
            },
            "examples": [r.text for r in singles[:: max(1, len(singles) // 5)]][:5],
            "eval_s": eval_s,
        }
    # Fit on training images tells a capacity/optimisation limit from a generalisation one.
    train_images, train_relations = read_relation_split(data_dir, "train")
    every = max(1, len(train_images) // len(test_images))
    fit = caption_groups(
        captioner, [[image] for image in train_images[::every]], settings=GREEDY, batch_size=64
    )
    train_fit = _caption_scores([r.text for r in fit], train_relations[::every])
    return {
        "prompt_version": prompt_version,
        "train_fit_single": train_fit,
        "train_s": train_s,
        "steps": result.global_step,
        "n_test_images": len(test_images),
        "n_test_groups": len(groups),
        "group_size": args.group_size,
        "curve": curve,
        "final": curve[-1],
        "checkpoint": str(result.checkpoint),
        **final,
    }


def _run_filter(
    args: argparse.Namespace, work: Path, data_dir: Path, backbone: Path
) -> dict[str, Any]:
    folder = work / "filter_data"
    labels_path = _write_filter_data(folder, data_dir, args)
    stream_images = args.filter_steps * args.batch_size if args.train_from == "stream" else 0
    run_dir = work / f"filter_{time.strftime('%Y%m%d_%H%M%S')}"
    config = FilterTrainConfig(
        data_file="" if stream_images else str(labels_path),
        synthetic_train_images=stream_images,
        synthetic_clutter_per_relational=args.clutter_per_relational,
        output_dir=str(run_dir),
        backbone=str(backbone),
        image_size=args.image_size,
        imbalance="weighted",
        finetune="full",
        freeze_vision=False,
        batch_size=args.batch_size,
        epochs=10_000,
        max_steps=args.filter_steps,
        lr=args.filter_lr,
        warmup_steps=min(20, args.filter_steps // 10),
        save_every=max(1, args.filter_steps // args.curve_points),
        log_every=10,
        seed=args.seed,
        num_workers=args.num_workers,
    )
    started = time.monotonic()
    trained = train_filter(config, should_stop=_time_limit(args.filter_time_limit))
    train_s = time.monotonic() - started
    assert trained.checkpoint is not None
    counts = FILTER.read_record(trained.checkpoint)["extra"]  # what the trainer saw

    relational, _ = read_relation_split(data_dir, "test")
    clutter = [draw_clutter(f"test/{n}", args.image_size, "test") for n in range(len(relational))]
    images = relational + clutter
    truth = np.array([True] * len(relational) + [False] * len(clutter))
    losses = _losses(run_dir)
    curve = []
    for checkpoint in _checkpoints(run_dir):
        step = int(checkpoint.name.split("-")[1])
        scores = np.array(
            score_images(load_filter(checkpoint, device=args.device), images, batch_size=64)
        )
        near = min(losses, key=lambda s: abs(s - step))
        curve.append({"step": step, "train_loss": losses[near], "roc_auc": roc_auc(scores, truth)})
    final_filter = load_filter(_checkpoints(run_dir)[-1], device=args.device)
    train_items = [json.loads(line) for line in labels_path.read_text().splitlines()]
    # As many of each class as the test pool holds (or as there are), so that both pools
    # are half relational and a keep-rate means the same on each.
    all_yes = [row for row in train_items if row["label"] == "yes"]
    all_no = [row for row in train_items if row["label"] == "no"]
    n_fit = min(len(relational), len(all_yes), len(all_no))
    fit_yes, fit_no = all_yes[:n_fit], all_no[:n_fit]
    fit_images = [
        Image.open(row["image"]).convert("RGB")
        if "image" in row
        else Image.open(folder / "images" / f"{row['image_hash']}.png").convert("RGB")
        for row in fit_yes + fit_no
    ]
    fit_scores = score_images(final_filter, fit_images, batch_size=64)
    train_auc = roc_auc(fit_scores, [True] * len(fit_yes) + [False] * len(fit_no))
    choice = choose_threshold(scores, truth, keep_rate=args.keep_rate)
    kept = scores >= choice.threshold
    precision_choice = choose_threshold(scores, truth, min_precision=0.9)
    # A threshold picked on one pool and applied to another: the test pool's unseen pairings
    # score lower than the calibration pool's, so its keep-rate drifts.
    transfer = choose_threshold(fit_scores, keep_rate=args.keep_rate)
    transfer_kept = scores >= transfer.threshold
    return {
        "train_s": train_s,
        "steps": trained.global_step,
        "n_train_yes": counts["n_yes"],
        "n_train_no": counts["n_no"],
        "n_test_relational": len(relational),
        "n_test_clutter": len(clutter),
        "curve": curve,
        "roc_auc": curve[-1]["roc_auc"],
        "train_fit_roc_auc": train_auc,
        "keep_rate_target": args.keep_rate,
        "keep_rate_threshold": choice.threshold,
        "keep_rate_achieved": float(kept.mean()),
        "keep_rate_met": choice.met,
        "keep_rate_precision": choice.precision,
        "transferred_threshold": transfer.threshold,
        "transferred_keep_rate": float(transfer_kept.mean()),
        "transferred_precision": float(truth[transfer_kept].mean()) if transfer_kept.any() else 0.0,
        "precision_0.9_threshold": precision_choice.threshold,
        "precision_0.9_met": precision_choice.met,
        "precision_0.9_recall": precision_choice.recall,
        "mean_score_relational": float(scores[truth].mean()),
        "mean_score_clutter": float(scores[~truth].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    PROMPTS.setdefault(SHORT_PROMPT.version, SHORT_PROMPT)
    work = args.work_dir / ("quick" if args.quick else "full")
    data_dir = work / f"synthetic_{args.per_relation}_{args.image_size}_{args.seed}"
    if not (data_dir / "labels.json").is_file():
        generate_dataset(
            data_dir, seed=args.seed, per_relation=args.per_relation, size=args.image_size
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
    started = time.monotonic()
    captioner = _run_captioner(args, work, data_dir, backbone)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Written now too, so a run cut short still leaves the captioner's figures.
    args.out.write_text(json.dumps({"captioner": captioner}, indent=2), encoding="utf-8")
    filter_backbone = backbone
    if args.filter_start == "captioner":
        trained = load_captioner(captioner["checkpoint"])
        filter_backbone = export_backbone(trained, work / "captioner_backbone")
    filter_figures = _run_filter(args, work, data_dir, filter_backbone)
    filter_figures["start"] = args.filter_start
    figures = {
        "command": " ".join(["-m benchmarks.captioner_filter_synthetic", *(argv or sys.argv[1:])]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "device": args.device,
        "training_precision": "bf16" if torch.cuda.is_available() else "fp32",
        "threads": args.threads,
        "total_s": time.monotonic() - started,
        "captioner": captioner,
        "filter": filter_figures,
        "targets": {
            "single_exact_template_rate>=0.7": captioner["final"]["single"]["exact_template_rate"]
            >= 0.7,
            "group_beats_single": captioner["final"]["group"]["exact_template_rate"]
            > captioner["final"]["single"]["exact_template_rate"],
            "filter_roc_auc>=0.9": filter_figures["roc_auc"] >= 0.9,
            "keep_rate_within_2_points": abs(
                filter_figures["keep_rate_achieved"] - filter_figures["keep_rate_target"]
            )
            <= 0.02,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    _print(figures, args)
    return 0


def _print(figures: dict[str, Any], args: argparse.Namespace) -> None:
    cap, fil = figures["captioner"], figures["filter"]
    stream = args.train_from == "stream"
    source = (
        f"freshly drawn samples ({args.group_share:.0%} groups of "
        f"2-4 images, the rest single images; none seen twice)"
        if stream
        else "the fixed set's train split and seed groups"
    )
    # Streamed runs never see the fixed set's train images: there they measure seen pairings.
    fit_name = "train-split pairings (unseen images)" if stream else "training images"
    start = "the trained captioner" if fil["start"] == "captioner" else "the untrained backbone"
    print(
        f"synthetic set: {args.per_relation} images per relation ({len(TEMPLATES)} relations), "
        f"{args.image_size} px; test images use held-out shape x colour pairings"
    )
    print(
        f"tiny backbone: LLM hidden {args.hidden} x {args.layers} layers, vision hidden "
        f"{args.vision_hidden} x {args.vision_depth} blocks; full fine-tuning; "
        f"trained on {'cuda (bf16)' if torch.cuda.is_available() else 'cpu (fp32)'}, evaluated "
        f"on {args.device}; {args.threads} CPU thread(s); total {figures['total_s']:.0f} s"
    )
    print()
    print(
        f"captioner: {cap['steps']} steps, batch {args.batch_size}, lr {args.lr}, prompt "
        f"{cap['prompt_version']}, trained in {cap['train_s']:.0f} s on {source}"
    )
    print(
        f"{'step':>6} {'loss':>7} {'single exact':>13} {'single near':>12} "
        f"{'group exact':>12} {'group near':>11} {'usable':>7}"
    )
    for row in cap["curve"]:
        print(
            f"{row['step']:>6} {row['train_loss']:>7.3f} "
            f"{row['single']['exact_template_rate']:>13.3f} "
            f"{row['single']['nearest_template_rate']:>12.3f} "
            f"{row['group']['exact_template_rate']:>12.3f} "
            f"{row['group']['nearest_template_rate']:>11.3f} {row['usable_rate']:>7.3f}"
        )
    print(
        f"  ({cap['n_test_images']} held-out images; {cap['n_test_groups']} held-out groups of "
        f"{cap['group_size']}; greedy decoding; 'near' = closest template by edit ratio)"
    )
    fit = cap["train_fit_single"]
    print(
        f"  fit on {fit_name} (single): exact {fit['exact_template_rate']:.3f}, "
        f"nearest {fit['nearest_template_rate']:.3f}"
    )
    print("  exact rate per relation (single images):")
    for name, rate in cap["per_relation_exact"].items():
        print(f"    {name:<18} {rate:.3f}")
    print()
    print(
        f"filter: {fil['n_train_yes']} relational vs {fil['n_train_no']} clutter training images "
        f"({'freshly drawn, ' if stream else ''}weighted loss), {fil['steps']} steps, lr "
        f"{args.filter_lr}, started from {start}, trained in {fil['train_s']:.0f} s"
    )
    print(f"{'step':>6} {'loss':>7} {'ROC AUC':>8}")
    for row in fil["curve"]:
        print(f"{row['step']:>6} {row['train_loss']:>7.3f} {row['roc_auc']:>8.3f}")
    print(
        f"  held-out: {fil['n_test_relational']} relational + {fil['n_test_clutter']} clutter; "
        f"mean score {fil['mean_score_relational']:.3f} vs {fil['mean_score_clutter']:.3f}"
    )
    print(f"  ROC AUC on {fit_name}: {fil['train_fit_roc_auc']:.3f}")
    print(
        f"  keep-rate {fil['keep_rate_target']:.2f}: threshold {fil['keep_rate_threshold']:.4f} "
        f"keeps {fil['keep_rate_achieved']:.3f} (precision {fil['keep_rate_precision']:.3f})"
    )
    print(
        f"  keep-rate {fil['keep_rate_target']:.2f} chosen on the {fit_name} pool, applied to "
        f"the held-out pool: keeps {fil['transferred_keep_rate']:.3f} (precision "
        f"{fil['transferred_precision']:.3f})"
    )
    print(
        f"  precision >= 0.9: met {fil['precision_0.9_met']}, recall "
        f"{fil['precision_0.9_recall']:.3f}"
    )
    print()
    for name, ok in figures["targets"].items():
        print(f"target {name}: {'yes' if ok else 'NO'}")
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
