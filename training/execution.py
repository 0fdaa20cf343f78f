"""Running one job by id: claim it, run its kind's runner, record how it ended. It knows no
app: runners register themselves by kind and end early through core's errors."""

from __future__ import annotations

import logging
import socket
import traceback

from core.errors import JobCancelled, JobInputError
from training import services
from training.reporting import JobReporter
from training.runners import runner_for

log = logging.getLogger(__name__)


def execute_job(job_id: int, *, worker: str | None = None) -> str | None:
    """Run a pending job to its end; returns the final status, or None if another worker
    already claimed it (a redelivered message)."""
    job = services.job_claim(job_id=job_id, worker=worker or socket.gethostname())
    if job is None:
        log.info("job %s was already claimed; skipping", job_id)
        return None
    run = runner_for(job.kind)
    if run is None:
        services.job_fail(job_id=job_id, error=f"no runner for job kind {job.kind!r} yet")
        return "failed"
    with JobReporter(job_id) as reporter:
        try:
            artifacts = run(job, reporter)
        except JobCancelled as exc:
            services.job_mark_cancelled(job_id=job_id, message=f"cancelled: {exc}")
            return "cancelled"
        except JobInputError as exc:
            services.job_fail(job_id=job_id, error=str(exc))
            return "failed"
        except Exception as exc:
            log.exception("job %s failed", job_id)
            services.job_log(job_id=job_id, lines=traceback.format_exc().splitlines()[-30:])
            services.job_fail(job_id=job_id, error=f"{type(exc).__name__}: {exc}")
            return "failed"
        if reporter.should_stop():
            services.job_mark_cancelled(job_id=job_id, message="cancelled")
            return "cancelled"
    services.job_succeed(job_id=job_id, artifacts=artifacts)
    return "succeeded"
