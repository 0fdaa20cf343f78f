"""A job's child process: its progress lines and metrics reach the job row as it runs, a
failure keeps its last words, and cancel takes down the whole process group."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from core.errors import JobCancelled
from training import services
from training.child_process import ChildJob, group_alive, run_job_child
from training.models import Job, JobMetric
from training.reporting import JobReporter

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_databases]

WRITER = r"""
import json, sys, time
metrics = sys.argv[1]
for step in (1, 2, 3):
    print(f"[{step}/3] step {step}", file=sys.stderr, flush=True)
    with open(metrics, "a") as out:
        loss = float("nan") if step == 2 else 1.0 / step
        out.write(json.dumps({"step": step, "loss": loss}) + "\n")
print("a plain log line", flush=True)
"""


def _job() -> Job:
    return Job.objects.create(kind=Job.Kind.TRAIN_RELSIM, status=Job.Status.RUNNING)


def test_progress_metrics_and_log_reach_the_job(tmp_path: Path, settings: object) -> None:
    job = _job()
    metrics = tmp_path / "metrics.jsonl"
    with JobReporter(job.pk) as reporter:
        outcome = ChildJob(
            job.pk,
            [sys.executable, "-c", WRITER, str(metrics)],
            reporter=reporter,
            log_path=tmp_path / "job.log",
            metrics_path=metrics,
        ).run()
    assert outcome.returncode == 0 and not outcome.cancelled
    job.refresh_from_db()
    assert job.progress == 1.0 and job.progress_message == "3/3 step 3"
    assert "a plain log line" in job.log_tail
    rows = {m.step: m.values for m in JobMetric.objects.filter(job=job)}
    # NaN (a diverging run) is stored as null rather than refused by the JSON column.
    assert rows == {
        1: {"step": 1, "loss": 1.0},
        2: {"step": 2, "loss": None},
        3: {"step": 3, "loss": 1 / 3},
    }


def test_a_failing_child_fails_the_job_with_its_last_lines(tmp_path: Path) -> None:
    job = _job()
    command = [sys.executable, "-c", "import sys; print('out of memory'); sys.exit(3)"]
    with JobReporter(job.pk) as reporter, pytest.raises(RuntimeError, match="exited with 3"):
        run_job_child(job.pk, reporter, command, log_path=tmp_path / "job.log")


def test_cancel_ends_the_group_even_when_the_child_ignores_sigterm(tmp_path: Path) -> None:
    job = _job()
    # The child ignores SIGTERM and starts a grandchild in its group: both must go.
    stubborn = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('[0/1] waiting', file=sys.stderr, flush=True)\n"
        "time.sleep(60)\n"
    )
    services.job_cancel(job=job)  # asked before it even starts: stops at the first check
    started = time.monotonic()
    with JobReporter(job.pk) as reporter, pytest.raises(JobCancelled):
        run_job_child(
            job.pk,
            reporter,
            [sys.executable, "-c", stubborn],
            log_path=tmp_path / "job.log",
        )
    assert time.monotonic() - started < 10
    job.refresh_from_db()
    pid = int(job.log_tail.split("started child process group ")[1].split()[0])
    # SIGKILL is delivered, not awaited: give the kernel a moment to end both.
    deadline = time.monotonic() + 5
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(pid)
