"""Runners of the model jobs: relsim training and embedding indexes (of a relsim model or of a
baseline). Each runs one of ml's command lines in a child process group
(training.child_process) and records what it made (a TrainedModel, an EmbeddingIndex) only
once its files are complete."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from captions.export import ExportError, ExportOptions, dataset_export
from core.errors import JobInputError
from curation.models import Image
from ml.search.baseline_models import BASELINE_MODELS
from training import services
from training.child_process import ChildOutcome, module_command, run_job_child
from training.model_paths import (
    baseline_model,
    baseline_model_folder,
    is_tiny_vlm,
    text_encoder_path,
    vlm_path,
)
from training.models import EmbeddingIndex, Job, TrainedModel
from training.reporting import JobReporter
from training.runners import runner
from training.snapshots import snapshot_zip, train_records, unpacked
from training.training_runs import checked_config, job_dir, model_register, train_in_child

MIN_TRAIN_IMAGES = 2

# The baselines the app indexes the pool with (ml.baselines.registry's names), and the model
# folders each loads. The tuned ones are checkpoints of their own; relsim has its models.
INDEX_BASELINES: dict[str, tuple[str, ...]] = {
    name: needs for name, needs in BASELINE_MODELS.items() if not name.startswith("tuned-")
}

# The paper's recipe (REFERENCE.md) is TrainConfig's own defaults; the demo's tiny VLM gets
# a recipe it can learn with on a CPU in minutes (as in benchmarks.relsim_synthetic).
TINY_RECIPE: dict[str, Any] = {
    "image_size": 112,
    "finetune": "full",
    "freeze_vision": False,
    "batch_size": 16,
    "lr": 5e-4,
    "warmup_steps": 10,
    # A demo set holds a few dozen training images: many short epochs.
    "epochs": 30,
    "save_every": 50,
    "log_every": 5,
}


def relsim_option_names() -> set[str]:
    """Every option of ml's relsim training config, which a job's `config` may set."""
    from ml.relsim import TrainConfig

    return {f.name for f in fields(TrainConfig)}


# Chosen by the job itself, never by the form.
RESERVED_OPTIONS = {"data_dir", "output_dir", "backbone", "text_model", "resume"}


def relsim_config(job: Job, data_dir: Path) -> dict[str, Any]:
    """The training config file's contents: the recipe, then the job's own options."""
    backbone = vlm_path()
    config: dict[str, Any] = dict(TINY_RECIPE) if is_tiny_vlm(backbone) else {}
    options = job.params.get("config") or {}
    if not isinstance(options, dict):
        raise JobInputError("the job's 'config' must be an object of training options")
    unknown = sorted(set(options) - relsim_option_names())
    if unknown:
        raise JobInputError(f"unknown training options: {', '.join(unknown)}")
    reserved = sorted(set(options) & RESERVED_OPTIONS)
    if reserved:
        raise JobInputError(f"set by the job, not by hand: {', '.join(reserved)}")
    config.update(options)
    config.update(
        data_dir=str(data_dir),
        output_dir=str(job_dir(job) / "run"),
        backbone=str(backbone),
        text_model=str(text_encoder_path()),
        resume=True,
    )
    from ml.relsim import TrainConfig

    return checked_config(TrainConfig, config)


def job_snapshot(job: Job, reporter: JobReporter) -> Path:
    """The export the job trains on: the one it names, or one it makes now. Recorded in
    the job's resume point, so a retry trains on the very same data."""
    recorded = job.resume_point.get("snapshot")
    if recorded:
        path = Path(recorded)
        if not path.is_file():
            raise JobInputError(f"the job's snapshot {path.name} is no longer on disk")
        return path
    export_id = job.params.get("snapshot_job")
    if export_id:
        try:
            path = snapshot_zip(Job.objects.get(pk=int(export_id)))
        except (Job.DoesNotExist, ValueError, TypeError):
            raise JobInputError(f"there is no export job #{export_id}") from None
    else:
        path = settings.DATA_DIR / "exports" / f"snapshot-job{job.pk}.zip"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            reporter.log("exporting the approved captions as this run's snapshot")
            try:
                dataset_export(out=path, options=ExportOptions(splits=("train", "test")))
            except ExportError as exc:
                raise JobInputError(f"could not export a snapshot: {exc}") from None
    Job.objects.filter(pk=job.pk).update(resume_point={**job.resume_point, "snapshot": str(path)})
    return path


def _run_child(
    job: Job, reporter: JobReporter, command: list[str], metrics: Path | None
) -> ChildOutcome:
    log = job_dir(job) / "job.log"
    return run_job_child(job.pk, reporter, command, log_path=log, metrics=metrics)


@runner(Job.Kind.TRAIN_RELSIM)
def run_train_relsim(job: Job, reporter: JobReporter) -> dict[str, Any]:
    reporter.progress(0, 0, "preparing the data snapshot")
    zip_path = job_snapshot(job, reporter)
    data_dir = unpacked(zip_path)
    config = relsim_config(job, data_dir)
    images = train_records(data_dir)
    if config.get("synthetic_train_images"):
        source = f"{config['synthetic_train_images']} freshly drawn synthetic images"
    elif images < MIN_TRAIN_IMAGES:
        raise JobInputError(
            f"the snapshot {zip_path.name} holds {images} captioned training image(s); "
            f"relsim needs at least {MIN_TRAIN_IMAGES} (approve captions of train-split groups)"
        )
    else:
        source = f"{images} captioned images of {zip_path.name}"
    reporter.log(f"training on {source}")
    checkpoint, metrics = train_in_child(job, reporter, "ml.relsim.train", config)
    model = model_register(
        job,
        kind=TrainedModel.Kind.RELSIM,
        checkpoint=checkpoint,
        base_vlm=config["backbone"],
        snapshot=zip_path,
        metrics=metrics,
    )
    artifacts: dict[str, Any] = {}
    if job.params.get("activate", True):
        model_activate(model=model)
        if job.params.get("build_index", True):
            # The new active model answers "find similar" once its index is built.
            index_job = services.job_create(
                kind=Job.Kind.EMBED, params={"model": model.pk}, user=job.created_by
            )
            artifacts["index_job_id"] = index_job.pk
            reporter.log(f"queued job #{index_job.pk} to build the model's index")
    return {
        **artifacts,
        "model_id": model.pk,
        "checkpoint": str(checkpoint),
        "snapshot": str(zip_path),
        "log": str(job_dir(job) / "job.log"),
    }


@transaction.atomic
def model_activate(*, model: TrainedModel) -> None:
    """Make `model` the active one of its kind."""
    TrainedModel.objects.filter(kind=model.kind, is_active=True).exclude(pk=model.pk).update(
        is_active=False
    )
    TrainedModel.objects.filter(pk=model.pk).update(is_active=True)
    model.is_active = True


@dataclass
class IndexSource:
    """What an index job embeds with: a relsim model or a baseline, as the child's options,
    the rows of its earlier indexes and what the new one's row and meta record."""

    label: str  # as the job log names it
    module: str  # the command line that embeds: `python -m MODULE`
    args: list[str]  # its options that name the embedder
    record: dict[str, Any]  # EmbeddingIndex's source fields
    folder_name: str  # the index folder's name, less its job
    meta: dict[str, Any]
    earlier: QuerySet[EmbeddingIndex]  # the same source's indexes
    batch_size: int
    # For a baseline: the model folders it loaded, which an earlier index must share.
    models: dict[str, str] | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)


def _index_model(job: Job) -> TrainedModel:
    model_id = job.params.get("model")
    models = TrainedModel.objects.filter(kind=TrainedModel.Kind.RELSIM)
    model = (
        models.filter(pk=model_id).first() if model_id else models.filter(is_active=True).first()
    )
    if model is None:
        wanted = f"relsim model #{model_id}" if model_id else "active relsim model"
        raise JobInputError(f"there is no {wanted} to embed with")
    if not Path(model.folder).is_dir():
        raise JobInputError(f"the model's folder {model.folder} is missing")
    return model


def _model_source(job: Job) -> IndexSource:
    model = _index_model(job)
    return IndexSource(
        label=f"relsim model #{model.pk}",
        module="ml.search.embed",
        args=["--checkpoint", model.folder],
        record={"model": model},
        folder_name=f"relsim-{model.pk}",
        meta={"embedder": "relsim", "checkpoint": model.folder, "model_id": model.pk},
        earlier=model.indexes.all(),
        batch_size=_batch_size(job, 16),
        artifacts={"model_id": model.pk},
    )


def index_baseline_problem(name: str) -> str:
    """Why the app cannot index the pool with the baseline `name` now, or ""."""
    if name not in INDEX_BASELINES:
        return f"unknown baseline {name!r}; indexes are built of {', '.join(INDEX_BASELINES)}"
    problems = [baseline_model(key).problem for key in INDEX_BASELINES[name]]
    found = [problem for problem in problems if problem]
    return f"the baseline {name} needs its model: {found[0]}" if found else ""


def _baseline_source(job: Job) -> IndexSource:
    name = job.params.get("baseline")
    if not isinstance(name, str):
        raise JobInputError("the job's 'baseline' must be a baseline's name")
    if job.params.get("model"):
        raise JobInputError("an index job embeds with a model or a baseline, not both")
    problem = index_baseline_problem(name)
    if problem:
        raise JobInputError(problem)
    models: dict[str, str] = {}
    stand_in = False
    for key in INDEX_BASELINES[name]:
        stand_in = stand_in or baseline_model(key).stand_in
        try:
            models[key] = str(baseline_model_folder(key))
        except ImproperlyConfigured as exc:
            raise JobInputError(f"the baseline {name} needs its model: {exc}") from None
    args = ["--baseline", name]
    for key, folder in models.items():
        args += ["--" + key.replace("_", "-"), folder]
    return IndexSource(
        label=f"baseline {name}",
        module="ml.baselines.embed",
        args=args,
        record={"baseline": name},
        folder_name=f"baseline-{name}",
        meta={"embedder": name, "baseline": name, "models": models, "stand_in": stand_in},
        earlier=EmbeddingIndex.objects.filter(model__isnull=True, baseline=name),
        batch_size=_batch_size(job, 32),
        models=models,
        artifacts={"baseline": name, "stand_in": stand_in},
    )


def _batch_size(job: Job, default: int) -> int:
    try:
        return max(1, int(job.params.get("batch_size") or default))
    except (TypeError, ValueError):
        raise JobInputError("the job's 'batch_size' must be a whole number") from None


@runner(Job.Kind.EMBED)
def run_embed(job: Job, reporter: JobReporter) -> dict[str, Any]:
    """Embed the pool with a relsim model (params "model", default the active one) or a
    baseline (params "baseline": a name of INDEX_BASELINES). With an earlier index of the
    same source (and no `full`), only images new since then are embedded and removed ones
    are dropped."""
    source = _baseline_source(job) if "baseline" in job.params else _model_source(job)
    pool = dict(Image.objects.order_by("id").values_list("id", "file"))
    if not pool:
        raise JobInputError("the pool holds no images to embed")
    previous = None if job.params.get("full") else _previous_index(source, reporter)
    kept_ids: list[str] = []
    kept_rows: Any = None
    if previous is not None:
        from ml.search import load_index

        old = load_index(Path(previous.folder))
        keep = [row for row, item in enumerate(old.ids) if int(item) in pool]
        kept_ids = [old.ids[row] for row in keep]
        kept_rows = old.vectors(keep) if keep else None
    known = {int(item) for item in kept_ids}
    todo = [(pk, name) for pk, name in pool.items() if pk not in known]
    folder = job_dir(job)
    folder.mkdir(parents=True, exist_ok=True)
    added_ids: list[str] = []
    added_rows: Any = None
    if todo:
        added_ids, added_rows = _embed_in_child(job, reporter, source, todo, folder)
        if kept_rows is not None and added_rows.shape[1] != kept_rows.shape[1]:
            # The embedder changed since (another version of ml): the rows cannot mix.
            raise JobInputError(
                f"the new rows have {added_rows.shape[1]} dimensions, the earlier index's "
                f"{kept_rows.shape[1]}: rebuild the index in full"
            )
    reporter.log(
        f"{source.label}: {len(added_ids)} image(s) embedded, {len(kept_ids)} kept from index "
        f"#{previous.pk if previous else '-'}, "
        f"{(previous.count - len(kept_ids)) if previous else 0} dropped"
    )
    return _write_index(job, source, kept_ids, kept_rows, added_ids, added_rows)


def _previous_index(source: IndexSource, reporter: JobReporter) -> EmbeddingIndex | None:
    index = source.earlier.order_by("-created_at", "-id").first()
    if index is None or not Path(index.folder).is_dir():
        return None
    if source.models is not None:
        # A baseline's rows are reused only when they came from the very same models.
        from ml.search import load_index

        made_with = load_index(Path(index.folder)).meta.get("models")
        if made_with != source.models:
            reporter.log(f"index #{index.pk} was made with other models; embedding every image")
            return None
    return index


def _embed_in_child(
    job: Job,
    reporter: JobReporter,
    source: IndexSource,
    todo: list[tuple[int, str]],
    folder: Path,
) -> tuple[list[str], Any]:
    media = Path(settings.MEDIA_ROOT)
    items = folder / "items.jsonl"
    items.write_text(
        "".join(json.dumps({"id": str(pk), "path": str(media / name)}) + "\n" for pk, name in todo)
    )
    scratch = folder / "index.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    args = [*source.args, "--items", str(items), "--out", str(scratch)]
    args += ["--batch-size", str(source.batch_size)]
    _run_child(job, reporter, module_command(source.module, args), None)
    from ml.search import load_index

    added = load_index(scratch)
    rows = added.vectors(list(range(added.n)))
    ids = list(added.ids)
    shutil.rmtree(scratch, ignore_errors=True)
    return ids, rows


def _write_index(
    job: Job,
    source: IndexSource,
    kept_ids: list[str],
    kept_rows: Any,
    added_ids: list[str],
    added_rows: Any,
) -> dict[str, Any]:
    import numpy as np

    from ml.search import write_index

    parts = [rows for rows in (kept_rows, added_rows) if rows is not None]
    ids = kept_ids + added_ids
    order = sorted(range(len(ids)), key=lambda row: int(ids[row]))
    matrix = np.concatenate(parts)[order]
    ids = [ids[row] for row in order]
    target = settings.DATA_DIR / "indexes" / f"{source.folder_name}-job{job.pk}"
    shutil.rmtree(target, ignore_errors=True)
    write_index(target, ids, matrix, source.meta)
    record = EmbeddingIndex.objects.create(
        **source.record, folder=str(target), count=len(ids), dim=int(matrix.shape[1]), job=job
    )
    return {
        "index_id": record.pk,
        **source.artifacts,
        "count": len(ids),
        "dim": int(matrix.shape[1]),
        "embedded": len(added_ids),
        "kept": len(kept_ids),
        "log": str(job_dir(job) / "job.log"),
        "finished": timezone.now().isoformat(),
    }
