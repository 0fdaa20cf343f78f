"""What every training job does around ml's trainer: write its config, run the trainer in a
child process group (resuming the newest checkpoint of the job's run folder), and record
the model once its checkpoint is complete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings

from core.errors import JobInputError
from training.child_process import module_command, run_job_child
from training.models import Job, JobMetric, TrainedModel
from training.reporting import JobReporter


def job_dir(job: Job) -> Path:
    return settings.DATA_DIR / "jobs" / str(job.pk)


def checked_config(config_class: Any, config: dict[str, Any]) -> dict[str, Any]:
    """`config` as ml's config class would read it, or the reason it would not."""
    try:
        config_class.from_dict(config).validate()
    except (TypeError, ValueError) as exc:
        raise JobInputError(f"the training options are not valid: {exc}") from None
    return config


def train_in_child(
    job: Job, reporter: JobReporter, module: str, config: dict[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """Run `python -m MODULE --config FILE` (under `accelerate launch` for params["gpus"] > 1)
    to its end; returns the newest checkpoint and the last logged metrics."""
    from ml.train import METRICS_FILE, latest_checkpoint

    folder = job_dir(job)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "train_config.json"
    config_path.write_text(json.dumps(config, indent=2))
    run_dir = Path(config["output_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    # A resumed run redraws its curve from the checkpoint it starts from.
    resume = latest_checkpoint(run_dir)
    resumed_step = int(resume.name.rsplit("-", 1)[-1]) if resume is not None else 0
    JobMetric.objects.filter(job=job, step__gt=resumed_step).delete()
    processes = max(1, int(job.params.get("gpus", 1) or 1))
    command = module_command(module, ["--config", str(config_path)], processes=processes)
    log = folder / "job.log"
    run_job_child(job.pk, reporter, command, log_path=log, metrics=run_dir / METRICS_FILE)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RuntimeError("training ended without a checkpoint")
    last = JobMetric.objects.filter(job=job).order_by("-step").first()
    return checkpoint, ({"step": last.step, **last.values} if last else {})


def model_register(
    job: Job,
    *,
    kind: str,
    checkpoint: Path,
    base_vlm: str,
    snapshot: Path,
    metrics: dict[str, Any],
) -> TrainedModel:
    """The trained model's row, named by the job's `name` param or after the job."""
    label = TrainedModel.Kind(kind).label
    name = str(job.params.get("name") or f"{label} job {job.pk}")
    return TrainedModel.objects.create(
        kind=kind,
        name=name[:200],
        folder=str(checkpoint),
        base_vlm=base_vlm,
        job=job,
        snapshot=str(snapshot),
        metrics=metrics,
        created_by=job.created_by,
    )
