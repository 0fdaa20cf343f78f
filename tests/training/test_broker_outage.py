"""A broker that cannot be reached: the page says so, the job row is failed with the reason
(never left pending with no message), and Retry sends it once the broker is back."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from training import selectors, services
from training.models import Job, WorkerBeat

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_databases]


def _closed_port() -> int:
    """A local port nothing listens on: connecting there is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _broker_down(password: str = "") -> Iterator[str]:
    """Point this process's Celery app at a Redis that is not there, then back."""
    from config.celery import app

    keys = ("broker_url", "broker_read_url", "broker_write_url", "broker_transport_options")
    saved = {key: app.conf[key] for key in keys}
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{_closed_port()}/0"
    _drop_connections(app)
    app.conf.update(
        broker_url=url, broker_read_url=url, broker_write_url=url, broker_transport_options={}
    )
    try:
        yield url
    finally:
        _drop_connections(app)
        app.conf.update(saved)


def _drop_connections(app: Any) -> None:
    """Forget the app's pooled connections and producers, so the next send connects to the
    configured broker. (Not closed: kombu keeps the pools per broker URL and hands the same
    one back when the URL is restored.)"""
    app._pool = None
    app.amqp._producer_pool = None


def _purge() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        for queue in ("cpu", "gpu"):
            # A queue never declared has nothing to purge.
            with contextlib.suppress(Exception):
                conn.default_channel.queue_purge(queue)


def test_an_export_started_while_the_broker_is_down_fails_with_the_reason_not_a_500(
    admin_client: Client,
) -> None:
    with _broker_down() as url:
        response = admin_client.post("/export/", {"splits": ["train"]}, follow=True)
    assert response.status_code == 200
    job = Job.objects.get()
    assert job.status == Job.Status.FAILED
    assert "could not be reached" in job.error and "127.0.0.1" in job.error
    assert url.split("//")[1] in job.error
    page = response.content.decode()
    assert "the job queue cannot be reached" in page
    assert 'id="retry-job"' in page


def test_retry_sends_the_job_again_once_the_broker_is_back(admin_client: Client) -> None:
    with _broker_down():
        admin_client.post("/export/", {"splits": ["train"]})
        job = Job.objects.get()
        still_down = admin_client.post(f"/jobs/{job.pk}/retry/", follow=True)
        job.refresh_from_db()
        assert job.status == Job.Status.FAILED
        assert b"still cannot be reached" in still_down.content
    _purge()
    try:
        back = admin_client.post(f"/jobs/{job.pk}/retry/", follow=True)
        job.refresh_from_db()
        assert job.status == Job.Status.PENDING and not job.error, job.error
        assert b"queued again" in back.content
    finally:
        _purge()


def test_the_broker_password_is_not_shown_in_the_error() -> None:
    with _broker_down(password="s3cret-pass"):
        job = services.job_create(kind=Job.Kind.EXPORT_DATASET, params={"splits": ["train"]})
    assert job.status == Job.Status.FAILED
    assert "s3cret-pass" not in job.error


def test_a_pending_job_with_no_live_worker_for_its_queue_is_flagged(
    admin_client: Client, settings: Any
) -> None:
    settings.RELSIM_JOB_STALE_SECONDS = 60
    job = Job.objects.create(kind=Job.Kind.EMBED, queue=Job.Queue.GPU)
    assert "No worker is taking the gpu queue" in selectors.job_warning(job)
    page = admin_client.get(f"/jobs/{job.pk}/")
    assert b'id="job-warning"' in page.content

    now = timezone.now()
    services.worker_beat(name="cpu-only@host", queues=["cpu"], pid=1)
    assert "gpu queue" in selectors.job_warning(job)  # a cpu worker does not count
    WorkerBeat.objects.create(
        name="old-gpu@host", queues=["gpu"], started_at=now, last_seen=now - timedelta(hours=1)
    )
    assert "gpu queue" in selectors.job_warning(job)  # nor one that went silent
    services.worker_beat(name="gpu@host", queues=["gpu"], pid=2)
    assert selectors.job_warning(job) == ""
    services.worker_gone(name="gpu@host")
    assert "gpu queue" in selectors.job_warning(job)


def test_the_job_page_does_not_write_and_explains_a_silent_running_job(
    admin_client: Client, settings: Any, django_assert_max_num_queries: Any
) -> None:
    settings.RELSIM_JOB_STALE_SECONDS = 60
    job = Job.objects.create(
        kind=Job.Kind.IMPORT_IMAGES,
        status=Job.Status.RUNNING,
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )
    page = admin_client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert b"may have died" in page.content
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING  # reaping is the workers' work, not a page view's


def test_cancel_from_the_job_page_stops_a_pending_job(admin_client: Client) -> None:
    job = Job.objects.create(kind=Job.Kind.IMPORT_IMAGES)
    admin_client.post(f"/jobs/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED


def test_only_finished_jobs_are_retried_from_the_page(admin_client: Client) -> None:
    job = Job.objects.create(kind=Job.Kind.IMPORT_IMAGES, status=Job.Status.RUNNING)
    response = admin_client.post(f"/jobs/{job.pk}/retry/", follow=True)
    assert b"Not retried" in response.content
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
