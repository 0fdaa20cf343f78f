"""The filter job's runner: train the interest filter on the interest labels (majority label
per image) in a child process, record it once its checkpoint is complete, score the pool with
it in a second child, keep the scores per image and model, and make it the active filter."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from core.errors import JobInputError
from curation.models import Image, InterestLabel
from training.child_process import module_command, run_job_child
from training.filter_selectors import (
    FILTER_TINY_RECIPE,
    LabelledSet,
    image_path,
    labelled_scores,
    labelled_set,
)
from training.filter_services import (
    filter_activate,
    filter_scores_publish,
    filter_scores_store,
    read_scores,
)
from training.model_paths import is_tiny_vlm, vlm_path
from training.models import FilterScore, Job, TrainedModel
from training.reporting import JobReporter
from training.runners import runner
from training.training_runs import checked_config, job_dir, model_register, train_in_child

SCORE_MODES = ("all", "new", "none")
# The job's "balance" names the two ways FilterTrainConfig meets the labels' imbalance.
BALANCE_MODES = {"weighted": "weighted", "balanced": "balanced"}
# Chosen by the job itself, never by its params' config.
RESERVED_FILTER_OPTIONS = {
    "data_file",
    "image_dir",
    "output_dir",
    "backbone",
    "resume",
    "imbalance",
    "synthetic_train_images",
    "synthetic_clutter_per_relational",
}


def filter_option_names() -> set[str]:
    """The FilterTrainConfig options a job's `config` may set."""
    from ml.captioning.filter_training import FilterTrainConfig

    return {f.name for f in fields(FilterTrainConfig)} - RESERVED_FILTER_OPTIONS


def filter_config(job: Job, labels_file: Path) -> dict[str, Any]:
    """The training config file's contents: the recipe, the job's options, then its own."""
    backbone = vlm_path()
    config: dict[str, Any] = dict(FILTER_TINY_RECIPE) if is_tiny_vlm(backbone) else {}
    options = job.params.get("config") or {}
    if not isinstance(options, dict):
        raise JobInputError("the job's 'config' must be an object of training options")
    reserved = sorted(set(options) & RESERVED_FILTER_OPTIONS)
    if reserved:
        raise JobInputError(f"set by the job, not by hand: {', '.join(reserved)}")
    unknown = sorted(set(options) - filter_option_names())
    if unknown:
        raise JobInputError(f"unknown filter training options: {', '.join(unknown)}")
    balance = job.params.get("balance", "weighted")
    if balance not in BALANCE_MODES:
        raise JobInputError(f"'balance' must be one of {', '.join(BALANCE_MODES)}, not {balance!r}")
    config.update(options)
    config.update(
        data_file=str(labels_file),
        output_dir=str(job_dir(job) / "run"),
        backbone=str(backbone),
        imbalance=BALANCE_MODES[balance],
        resume=True,
    )
    from ml.captioning.filter_training import FilterTrainConfig

    return checked_config(FilterTrainConfig, config)


def write_labels(labels: LabelledSet, path: Path) -> None:
    """The labels JSONL filter_training reads: an absolute image path and yes/no a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps(
                {
                    "image": str(image_path(image.file)),
                    "label": "yes" if image.interesting else "no",
                }
            )
            + "\n"
            for image in labels.images
        ),
        encoding="utf-8",
    )


def _run_child(
    job: Job,
    reporter: JobReporter,
    command: list[str],
    metrics: Path | None,
    after: Callable[[], None] | None = None,
) -> None:
    log = job_dir(job) / "job.log"
    run_job_child(job.pk, reporter, command, log_path=log, metrics=metrics, after=after)


def _train(job: Job, reporter: JobReporter, labels: LabelledSet) -> TrainedModel:
    folder = job_dir(job)
    # A retry learns from the very labels the first try wrote, and resumes its checkpoint.
    recorded = job.resume_point.get("labels")
    labels_file = Path(recorded) if recorded else folder / "labels.jsonl"
    if not labels_file.is_file():
        problem = labels.too_few()
        if problem:
            raise JobInputError(problem)
        write_labels(labels, labels_file)
        job.resume_point = {**job.resume_point, "labels": str(labels_file)}
        Job.objects.filter(pk=job.pk).update(resume_point=job.resume_point)
    config = filter_config(job, labels_file)
    module = "ml.captioning.filter_training"
    checkpoint, metrics = train_in_child(job, reporter, module, config)
    model = model_register(
        job,
        kind=TrainedModel.Kind.FILTER,
        checkpoint=checkpoint,
        base_vlm=config["backbone"],
        snapshot=labels_file,
        metrics={
            **metrics,
            "labels_yes": labels.yes,
            "labels_no": labels.no,
            "imbalance": config["imbalance"],
        },
    )
    job.resume_point = {**job.resume_point, "model": model.pk}
    Job.objects.filter(pk=job.pk).update(resume_point=job.resume_point)
    return model


def _given_model(model_id: Any) -> TrainedModel:
    try:
        model = TrainedModel.objects.get(pk=int(model_id), kind=TrainedModel.Kind.FILTER)
    except (TrainedModel.DoesNotExist, TypeError, ValueError):
        raise JobInputError(f"there is no interest filter model #{model_id}") from None
    if not Path(model.folder).is_dir():
        raise JobInputError(f"the model's folder {model.folder} is missing")
    return model


def score_targets(model: TrainedModel, mode: str) -> QuerySet[Image]:
    """The images a scoring pass covers: all, or those the model has no score for; "none"
    still scores the labelled images (the labelled set's AUC, precision and recall need
    them)."""
    images = Image.objects.all()
    if mode == "all":
        return images
    unscored = images.filter(~Exists(FilterScore.objects.filter(image=OuterRef("pk"), model=model)))
    if mode == "new":
        return unscored
    return unscored.filter(Exists(InterestLabel.objects.filter(image=OuterRef("pk"))))


def _score(job: Job, reporter: JobReporter, model: TrainedModel, mode: str) -> int:
    folder = job_dir(job)
    items = folder / "score_items.jsonl"
    count = 0
    with items.open("w", encoding="utf-8") as handle:
        rows = score_targets(model, mode).order_by("id").values_list("id", "file")
        for pk, name in rows.iterator(chunk_size=2000):
            handle.write(json.dumps({"id": str(pk), "path": str(image_path(name))}) + "\n")
            count += 1
    if not count:
        reporter.log("nothing to score: every image already has this model's score")
        return 0
    out = folder / "scores.jsonl"
    out.unlink(missing_ok=True)
    stored = 0

    def keep_scores() -> None:
        nonlocal stored
        stored = filter_scores_store(model=model, scores=read_scores(out))

    args = ["--checkpoint", model.folder, "--items", str(items), "--out", str(out)]
    args += ["--batch-size", str(int(job.params.get("batch_size", 16) or 16))]
    _run_child(job, reporter, module_command("ml.captioning.score_filter", args), None, keep_scores)
    if stored < count:
        reporter.log(f"{count - stored} image(s) could not be scored (see the log)")
    return stored


def _labelled_auc(model: TrainedModel, labels: LabelledSet) -> float | None:
    scores, truth = labelled_scores(model, labels)
    if not any(truth) or all(truth):
        return None
    from ml.captioning.interest_filter import roc_auc

    return round(roc_auc(scores, truth), 4)


@runner(Job.Kind.FILTER)
def run_filter(job: Job, reporter: JobReporter) -> dict[str, Any]:
    mode = job.params.get("score", "all")
    if mode not in SCORE_MODES:
        raise JobInputError(f"'score' must be one of {', '.join(SCORE_MODES)}, not {mode!r}")
    given = job.params.get("model")
    if given is not None and mode == "none":
        raise JobInputError(
            "a job with an existing 'model' only scores: 'score' must be all or new"
        )
    job_dir(job).mkdir(parents=True, exist_ok=True)
    labels = labelled_set()
    recorded = job.resume_point.get("model")
    if given is not None:
        model = _given_model(given)
    elif recorded is not None:
        model = _given_model(recorded)  # a retry after training finished scores on
    else:
        model = _train(job, reporter, labels)
    scored = _score(job, reporter, model, mode)
    auc = _labelled_auc(model, labels)
    if auc is not None and model.job_id == job.pk:
        model.metrics = {**model.metrics, "auc_labelled": auc}
        TrainedModel.objects.filter(pk=model.pk).update(metrics=model.metrics)
    if job.params.get("activate", True):
        filter_activate(model=model)
    elif model.is_active:
        filter_scores_publish(model=model)  # the pool shows the active filter's new scores
    return {
        "model_id": model.pk,
        "checkpoint": model.folder,
        "scored": scored,
        "scores_total": FilterScore.objects.filter(model=model).count(),
        "labels_yes": labels.yes,
        "labels_no": labels.no,
        "auc_labelled": auc,
        "log": str(job_dir(job) / "job.log"),
    }
