"""Runners of the captioner jobs: train the anonymous captioner (LoRA SFT, or the tiny recipe
on the demo VLM) on an export snapshot of approved captions and make it the active one, and
draft captions for groups or images with it, stored as model drafts for review."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from django.conf import settings

from core.errors import JobInputError
from curation.models import GroupMember, Image
from training.caption_selectors import (
    CAPTIONER_TINY_RECIPE,
    DEFAULT_THRESHOLD,
    TARGETS,
    TINY_MAX_NEW_TOKENS,
    Targets,
    active_captioner,
    group_targets,
    image_targets,
    images_are_filtered,
    too_few_captions,
)
from training.caption_services import caption_drafts_store, read_drafts
from training.child_process import module_command, run_job_child
from training.model_jobs import job_snapshot, model_activate
from training.model_paths import is_tiny_vlm, vlm_path
from training.models import Job, TrainedModel
from training.reporting import JobReporter
from training.runners import runner
from training.snapshots import unpacked
from training.training_runs import checked_config, job_dir, model_register, train_in_child

TRAIN_CAPTIONS = "anonymous_captions_train.jsonl"
SEED_GROUPS = "seed_group.json"
# Chosen by the job itself, never by its params' config.
RESERVED_CAPTIONER_OPTIONS = {
    "data_dir",
    "output_dir",
    "backbone",
    "resume",
    "train_file",
    "groups_file",
    "synthetic_train_samples",
    "synthetic_group_share",
}


def captioner_option_names() -> set[str]:
    """The CaptionerTrainConfig options a job's `config` may set."""
    from ml.captioning.captioner_training import CaptionerTrainConfig

    return {f.name for f in fields(CaptionerTrainConfig)} - RESERVED_CAPTIONER_OPTIONS


def captioner_config(job: Job, data_dir: Path, groups_file: Path) -> dict[str, Any]:
    """The training config file's contents: the recipe, the job's options, then its own."""
    backbone = vlm_path()
    config: dict[str, Any] = dict(CAPTIONER_TINY_RECIPE) if is_tiny_vlm(backbone) else {}
    options = job.params.get("config") or {}
    if not isinstance(options, dict):
        raise JobInputError("the job's 'config' must be an object of training options")
    reserved = sorted(set(options) & RESERVED_CAPTIONER_OPTIONS)
    if reserved:
        raise JobInputError(f"set by the job, not by hand: {', '.join(reserved)}")
    unknown = sorted(set(options) - captioner_option_names())
    if unknown:
        raise JobInputError(f"unknown captioner training options: {', '.join(unknown)}")
    config.update(options)
    config.update(
        data_dir=str(data_dir),
        groups_file=str(groups_file),
        output_dir=str(job_dir(job) / "run"),
        backbone=str(backbone),
        resume=True,
    )
    from ml.captioning.captioner_training import CaptionerTrainConfig

    return checked_config(CaptionerTrainConfig, config)


def train_groups(data_dir: Path, out: Path) -> tuple[int, int]:
    """Write the snapshot's train-split groups to `out` (seed_group.json holds the test
    groups too, which the captioner must not learn from); returns (distinct train captions,
    train groups)."""
    train = data_dir / TRAIN_CAPTIONS
    lines = train.read_text(encoding="utf-8").splitlines() if train.is_file() else []
    rows = [json.loads(line) for line in lines if line.strip()]
    hashes = {row["image_hash"] for row in rows}
    groups_path = data_dir / SEED_GROUPS
    groups = json.loads(groups_path.read_text(encoding="utf-8")) if groups_path.is_file() else []
    kept = [
        group
        for group in groups
        if group.get("image_urls")
        and all(Path(str(url)).stem in hashes for url in group["image_urls"])
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(kept, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return len({row["caption"] for row in rows}), len(kept)


def _recorded_model(job: Job) -> TrainedModel | None:
    recorded = job.resume_point.get("model")
    if recorded is None:
        return None
    return TrainedModel.objects.filter(pk=recorded, kind=TrainedModel.Kind.CAPTIONER).first()


@runner(Job.Kind.TRAIN_CAPTIONER)
def run_train_captioner(job: Job, reporter: JobReporter) -> dict[str, Any]:
    folder = job_dir(job)
    folder.mkdir(parents=True, exist_ok=True)
    # A retry after the model was recorded only has the activation left to do.
    model = _recorded_model(job)
    if model is None:
        model = _train_captioner(job, reporter, folder)
    if job.params.get("activate", True):
        model_activate(model=model)
    return {
        "model_id": model.pk,
        "checkpoint": model.folder,
        "snapshot": model.snapshot,
        "captions": model.metrics.get("train_captions"),
        "groups": model.metrics.get("train_groups"),
        "log": str(folder / "job.log"),
    }


def _train_captioner(job: Job, reporter: JobReporter, folder: Path) -> TrainedModel:
    zip_path = job_snapshot(job, reporter)
    job.refresh_from_db(fields=["resume_point"])
    data_dir = unpacked(zip_path)
    groups_file = folder / "train_groups.json"
    captions, groups = train_groups(data_dir, groups_file)
    problem = too_few_captions(captions)
    if problem:
        raise JobInputError(f"the snapshot {zip_path.name} holds {problem}")
    config = captioner_config(job, data_dir, groups_file)
    module = "ml.captioning.captioner_training"
    checkpoint, metrics = train_in_child(job, reporter, module, config)
    from ml.captioning.prompts import PROMPT_VERSION

    model = model_register(
        job,
        kind=TrainedModel.Kind.CAPTIONER,
        checkpoint=checkpoint,
        base_vlm=config["backbone"],
        snapshot=zip_path,
        metrics={
            **metrics,
            "train_captions": captions,
            "train_groups": groups,
            "prompt_version": config.get("prompt_version", PROMPT_VERSION),
        },
    )
    job.resume_point = {**job.resume_point, "model": model.pk}
    Job.objects.filter(pk=job.pk).update(resume_point=job.resume_point)
    return model


# --- Drafting -----------------------------------------------------------------------------


def _draft_model(job: Job) -> TrainedModel:
    given = job.params.get("model")
    if given is None:
        model = active_captioner()
        if model is None:
            raise JobInputError("there is no active captioner: train one first")
    else:
        try:
            model = TrainedModel.objects.get(pk=int(given), kind=TrainedModel.Kind.CAPTIONER)
        except (TrainedModel.DoesNotExist, TypeError, ValueError):
            raise JobInputError(f"there is no captioner model #{given}") from None
    if not Path(model.folder).is_dir():
        raise JobInputError(f"the model's folder {model.folder} is missing")
    return model


def _limit(job: Job) -> int | None:
    raw = job.params.get("limit")
    if raw in (None, ""):
        return None
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise JobInputError(f"'limit' must be a whole number, not {raw!r}") from None
    if limit < 1:
        raise JobInputError("'limit' must be at least 1")
    return limit


def _threshold(job: Job, reporter: JobReporter) -> float | None:
    if not images_are_filtered():
        reporter.log("no image has a filter score: drafting for every image")
        return None
    raw = job.params.get("threshold", DEFAULT_THRESHOLD)
    try:
        threshold = float(raw)
    except (TypeError, ValueError):
        raise JobInputError(f"'threshold' must be a number, not {raw!r}") from None
    if not 0.0 <= threshold <= 1.0:
        raise JobInputError("'threshold' must lie within [0, 1]")
    return threshold


def _items(target: str, ids: list[int]) -> list[dict[str, Any]]:
    """One draft_cli item per target: a group's members in order, or one image."""
    media = Path(settings.MEDIA_ROOT)
    if target == "images":
        files = dict(Image.objects.filter(pk__in=ids).values_list("pk", "file"))
        return [{"id": str(pk), "paths": [str(media / files[pk])]} for pk in ids if pk in files]
    members: dict[int, list[str]] = {}
    rows = (
        GroupMember.objects.filter(group_id__in=ids)
        .order_by("group_id", "position", "id")
        .values_list("group_id", "image__file")
    )
    for group_id, name in rows:
        members.setdefault(group_id, []).append(str(media / name))
    return [{"id": str(pk), "paths": members[pk]} for pk in ids if pk in members]


def _generation_args(job: Job, model: TrainedModel) -> list[str]:
    """draft_cli's sampling options: the paper's (its defaults) unless the job says else; the
    tiny model's drafts are kept short."""
    options: dict[str, Any] = {}
    if model.base_vlm and is_tiny_vlm(Path(model.base_vlm)):
        options["max_new_tokens"] = TINY_MAX_NEW_TOKENS
    for name, kind in (
        ("max_new_tokens", int),
        ("temperature", float),
        ("top_p", float),
        ("seed", int),
    ):
        options.update(_number(job, name, kind))
    args: list[str] = []
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def _number(job: Job, name: str, kind: type[int] | type[float]) -> dict[str, Any]:
    raw = job.params.get(name)
    if raw is None:
        return {}
    try:
        return {name: kind(raw)}
    except (TypeError, ValueError):
        raise JobInputError(f"'{name}' must be a number, not {raw!r}") from None


@runner(Job.Kind.CAPTION)
def run_caption(job: Job, reporter: JobReporter) -> dict[str, Any]:
    target = job.params.get("target", "groups")
    if target not in TARGETS:
        raise JobInputError(f"'target' must be one of {', '.join(TARGETS)}, not {target!r}")
    limit = _limit(job)
    model = _draft_model(job)
    threshold = _threshold(job, reporter) if target == "images" else None
    # A retry finds the drafts stored by the first try already in review: it drafts the rest.
    targets: Targets = (
        group_targets(limit) if target == "groups" else image_targets(threshold, limit)
    )
    skipped = {"skipped_human": targets.skipped_human, "skipped_model": targets.skipped_model}
    reporter.log(
        f"{len(targets.ids)} {target} to draft; skipped {targets.skipped_human} with a "
        f"person's caption and {targets.skipped_model} with a model's"
    )
    folder = job_dir(job)
    folder.mkdir(parents=True, exist_ok=True)
    items = _items(target, targets.ids)
    stored = None
    if items:
        items_path = folder / "draft_items.jsonl"
        items_path.write_text("".join(json.dumps(item) + "\n" for item in items))
        out = folder / "drafts.jsonl"
        out.unlink(missing_ok=True)
        args = ["--checkpoint", model.folder, "--items", str(items_path), "--out", str(out)]
        args += _generation_args(job, model)

        def keep_drafts() -> None:
            nonlocal stored
            stored = caption_drafts_store(
                model=model, target=target, drafts=read_drafts(out), job=job
            )

        command = module_command("ml.captioning.draft_cli", args)
        run_job_child(job.pk, reporter, command, log_path=folder / "job.log", after=keep_drafts)
    else:
        reporter.log(f"nothing to draft: every {target[:-1]} has a caption or is in review")
    created = stored.created if stored else 0
    if stored and stored.unusable:
        reporter.log(f"{stored.unusable} draft(s) were unusable (empty or broken braces)")
    return {
        "model_id": model.pk,
        "target": target,
        "threshold": threshold,
        "targets": len(items),
        "created": created,
        "unusable": stored.unusable if stored else 0,
        "taken_meanwhile": stored.taken if stored else 0,
        **skipped,
        "log": str(folder / "job.log"),
    }
