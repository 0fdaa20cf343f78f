"""Handing a job id to the broker. Tasks are sent by name through Celery's current app, so
enqueueing needs neither the task code nor what it runs."""

from __future__ import annotations

from pathlib import Path

from celery import current_app
from kombu.utils.url import maybe_sanitize_url

RUN_JOB_TASK = "training.run_job"


def ensure_broker_folders() -> None:
    """The filesystem transport needs its folders to exist before the first message."""
    options = current_app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in options:
            Path(str(options[key])).mkdir(parents=True, exist_ok=True)


def send_job(job_id: int, *, queue: str) -> None:
    """Send the job's id to its queue; raises whatever the broker connection raises."""
    ensure_broker_folders()
    current_app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)


def broker_name() -> str:
    """The broker's URL without its password, for messages people read."""
    conf = current_app.conf
    return str(maybe_sanitize_url(str(conf.broker_write_url or conf.broker_url)))
