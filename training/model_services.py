"""Writes for the model pages: import a checkpoint folder as a model, start relsim training
and index builds (gpu jobs through services.job_create)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from training import services
from training.model_jobs import model_activate
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
