"""What every job command does once its job exists: run it here with a progress bar, or
follow it on a worker (Ctrl-C asks it to stop), then print how it ended."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TextIO

from django.core.management.base import CommandError, OutputWrapper
from tqdm import tqdm

from training import services
from training.execution import execute_job
from training.models import Job

POLL_S = 0.5


def follow(job: Job, stderr: OutputWrapper | TextIO) -> None:
    """A progress bar from the job row on a terminal; progress lines in a log."""
    bar = tqdm(total=1000, unit="‰", disable=not sys.stderr.isatty(), dynamic_ncols=True)
    last_message = ""
    try:
        while True:
            job.refresh_from_db()
            bar.n = int(job.progress * 1000)
            bar.set_postfix_str(job.progress_message[-50:], refresh=False)
            bar.refresh()
            if not sys.stderr.isatty() and job.progress_message != last_message:
                last_message = job.progress_message
                stderr.write(f"[{job.progress:.0%}] {last_message}")
            if job.is_finished:
                return
            time.sleep(POLL_S)
    finally:
        bar.close()


def run_here(job: Job, stderr: OutputWrapper, *, worker: str) -> None:
    """Run the job in this thread; on a terminal a second thread draws its progress bar.
    Ctrl-C stops the job (and any process group it started) and marks it cancelled."""
    stderr.write(f"Job #{job.pk} ({job.get_kind_display()}) runs here.")
    if not sys.stderr.isatty():
        execute_job(job.pk, worker=worker)
        return
    watcher = threading.Thread(target=follow, args=(job, stderr), daemon=True)
    watcher.start()
    try:
        execute_job(job.pk, worker=worker)
    except KeyboardInterrupt:
        services.job_mark_cancelled(job_id=job.pk, message="interrupted at the terminal")
        raise CommandError("interrupted") from None
    watcher.join(timeout=5)


def wait_on_worker(job: Job, stdout: OutputWrapper, stderr: OutputWrapper, *, label: str) -> None:
    """Follow a queued job until it ends; Ctrl-C asks it to stop and waits for that."""
    if job.status == Job.Status.FAILED:
        raise CommandError(job.error)
    stderr.write(f"{label}: job #{job.pk} ({job.get_kind_display()}); Ctrl-C asks it to stop.")
    try:
        follow(job, stderr)
    except KeyboardInterrupt:
        services.job_cancel(job=job)
        stderr.write("Asked the job to stop; waiting for it to save and end.")
        follow(job, stderr)


def report_end(job: Job, stdout: OutputWrapper, *, label: str) -> None:
    """How the job ended and what it made; a job that did not succeed fails the command."""
    job.refresh_from_db()
    stdout.write(f"{label}, job #{job.pk}: {job.status} {job.progress_message}")
    if job.artifacts:
        stdout.write(json.dumps(job.artifacts, indent=2))
    if job.status != Job.Status.SUCCEEDED:
        raise CommandError(job.error or f"the job ended {job.status}")
