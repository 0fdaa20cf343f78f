"""The Celery application: long jobs, acked late, one job at a time per worker process."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from celery.signals import celeryd_init
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("relsim")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue="cpu",
    # Each queue its own exchange and key: a gpu job must never also land on cpu workers.
    task_queues=tuple(Queue(name, Exchange(name), routing_key=name) for name in ("cpu", "gpu")),
    task_default_exchange="cpu",
    task_default_routing_key="cpu",
    task_time_limit=7 * 24 * 3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
app.autodiscover_tasks()


def ensure_broker_folders() -> None:
    """The filesystem transport needs its folders to exist before the first message."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in options:
            Path(str(options[key])).mkdir(parents=True, exist_ok=True)


@celeryd_init.connect
def _prepare_broker(**kwargs: object) -> None:
    ensure_broker_folders()
