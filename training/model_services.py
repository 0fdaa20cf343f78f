"""Writes for the model pages: import a checkpoint folder as a model, start relsim training
and index builds (gpu jobs through services.job_create; a weight-free baseline's index on the
cpu queue)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from training import services
from training.model_jobs import INDEX_BASELINES, model_activate
from training.models import Job, TrainedModel


def model_import(
    *, folder: Path, name: str, base_vlm: str, user: User | None, activate: bool = False
) -> TrainedModel:
    """Record a checkpoint folder, already checked to be a complete relsim checkpoint
    (model_selectors.relsim_checkpoint), as a relsim model."""
    with transaction.atomic():
        model = TrainedModel.objects.create(
            kind=TrainedModel.Kind.RELSIM,
            name=(name or folder.name)[:200],
            folder=str(folder),
            base_vlm=base_vlm[:1000],
            created_by=user,
        )
        if activate:
            model_activate(model=model)
    return model


def relsim_training_start(
    *,
    name: str,
    snapshot_job: int | None,
    config: dict[str, Any],
    gpus: int,
    activate: bool,
    user: User | None,
) -> Job:
    """Queue a relsim training job. `config` holds only the options that differ from the
    recipe the job applies itself (model_jobs.relsim_config); no snapshot means the job
    exports the approved captions when it starts."""
    params: dict[str, Any] = {"name": name, "config": config, "gpus": gpus, "activate": activate}
    if snapshot_job is not None:
        params["snapshot_job"] = snapshot_job
    return services.job_create(kind=Job.Kind.TRAIN_RELSIM, params=params, user=user)


def index_build_start(*, model: TrainedModel, batch_size: int, user: User | None) -> Job:
    """Queue an embedding index of the pool made by `model`."""
    return services.job_create(
        kind=Job.Kind.EMBED, params={"model": model.pk, "batch_size": batch_size}, user=user
    )


def baseline_index_start(
    *, baseline: str, full: bool = False, batch_size: int | None = None, user: User | None
) -> Job:
    """Queue an embedding index of the pool made by `baseline` (a name of INDEX_BASELINES):
    on the cpu queue when it is weight-free, on the gpu queue when it loads models."""
    if baseline not in INDEX_BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}")
    params: dict[str, Any] = {"baseline": baseline}
    if full:
        params["full"] = True
    if batch_size:
        params["batch_size"] = batch_size
    queue = Job.Queue.GPU if INDEX_BASELINES[baseline] else Job.Queue.CPU
    # As services.job_create does, but on the queue chosen here: it sends every embedding
    # job to the gpu queue, and a histogram needs no GPU.
    job = Job.objects.create(kind=Job.Kind.EMBED, params=params, queue=queue, created_by=user)
    transaction.on_commit(lambda: services.job_enqueue(job_id=job.pk, queue=queue))
    if not transaction.get_connection().in_atomic_block:
        job.refresh_from_db()
    return job
