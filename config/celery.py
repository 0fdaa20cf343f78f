"""The Celery application: long jobs, acked late, one job at a time per worker process."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import celeryd_init
from kombu import Exchange, Queue

from training.queueing import ensure_broker_folders

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


@celeryd_init.connect
def _prepare_broker(**kwargs: object) -> None:
    ensure_broker_folders()
