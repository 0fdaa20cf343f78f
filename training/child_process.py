"""Model jobs run in a child process group that the worker starts and watches, so the
Celery worker never initialises CUDA and a cancelled or crashed job leaves no process
holding GPU memory.

The child is one of ml's command lines (`python -m ml.relsim.train --config FILE`, or the
same under `accelerate launch` for several GPUs). It writes its output to a log file of its
own; progress lines (`[done/total] message`, ml's command-line format) and the loop's
metrics file are copied to the job row while it runs. Cancel: SIGTERM to the group (ml's
command lines then save and stop after the current step), SIGKILL after a grace period."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from core.errors import JobCancelled
from training import services
from training.models import JobMetric
from training.reporting import JobReporter

PROGRESS_LINE = re.compile(r"^\[(\d+)/(\d+)\] (.*)$")
POLL_S = 0.25
LOG_LINES_PER_POLL = 50


@dataclass(frozen=True)
class ChildOutcome:
    returncode: int
    cancelled: bool
    log_path: Path
    last_lines: list[str]


def module_command(module: str, args: Sequence[str], *, processes: int = 1) -> list[str]:
    """The child's command: `python -m MODULE ARGS`, or the same under `accelerate launch`
    with one process per GPU. Multi-GPU is asked for rather than left to accelerate's
    guess, which falls back to one process when it sees fewer than two GPUs. (With
    ACCELERATE_USE_CPU=true in the environment the same command trains on the CPU over
    gloo: how the suite checks this path without GPUs.)"""
    if processes <= 1:
        return [sys.executable, "-m", module, *args]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    return [*launch, "--num_processes", str(processes), "-m", module, *args]


def _die_with_parent() -> None:
    # Runs in the child before exec: a worker killed with SIGKILL takes its child along
    # (Linux; elsewhere the stale-job reaper is the only safety net).
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class _Tail:
    """New complete lines of a file that another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        # ml's progress bars rewrite a line with \r: each rewrite counts as a line.
        chunks = (self.partial + data).replace(b"\r", b"\n").split(b"\n")
        self.partial = chunks.pop()
        return [chunk.decode("utf-8", "replace") for chunk in chunks if chunk.strip()]


class ChildJob:
    """Run one command for a job and mirror what it reports onto the job row."""

    def __init__(
        self,
        job_id: int,
        command: Sequence[str],
        *,
        reporter: JobReporter,
        log_path: Path,
        metrics_path: Path | None = None,
        env: dict[str, str] | None = None,
        grace_s: float | None = None,
    ) -> None:
        self.job_id = job_id
        self.command = list(command)
        self.reporter = reporter
        self.log_path = log_path
        self.metrics_path = metrics_path
        self.env = env
        self.grace_s = settings.RELSIM_JOB_CANCEL_GRACE_SECONDS if grace_s is None else grace_s
        self.last_lines: list[str] = []

    def run(self) -> ChildOutcome:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_tail = _Tail(self.log_path)
        log_tail.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        metrics_tail = _Tail(self.metrics_path) if self.metrics_path else None
        environment = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
        # The project root on the path, so `-m ml...` imports this checkout's library.
        root = str(settings.BASE_DIR)
        environment["PYTHONPATH"] = os.pathsep.join(
            part for part in (root, environment.get("PYTHONPATH", "")) if part
        )
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.command)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                env=environment,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        services.job_log(job_id=self.job_id, lines=[f"started child process group {process.pid}"])
        cancelled_at: float | None = None
        killed = False
        try:
            while True:
                finished = process.poll() is not None
                self._mirror(log_tail, metrics_tail)
                if finished:
                    break
                if cancelled_at is None and services.job_cancel_requested(job_id=self.job_id):
                    cancelled_at = time.monotonic()
                    _signal_group(process.pid, signal.SIGTERM)
                    services.job_log(job_id=self.job_id, lines=["cancel: SIGTERM sent"])
                elif (
                    cancelled_at is not None
                    and not killed
                    and time.monotonic() - cancelled_at >= self.grace_s
                ):
                    killed = True
                    _signal_group(process.pid, signal.SIGKILL)
                time.sleep(POLL_S)
        finally:
            # Whatever happened (an error here, the worker stopping), no process of the
            # group outlives the job: data loader workers and `accelerate` ranks included.
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
            else:
                _signal_group(process.pid, signal.SIGKILL)
        return ChildOutcome(
            returncode=process.returncode,
            cancelled=cancelled_at is not None,
            log_path=self.log_path,
            last_lines=self.last_lines,
        )

    def _mirror(self, log_tail: _Tail, metrics_tail: _Tail | None) -> None:
        other: list[str] = []
        for line in log_tail.lines():
            match = PROGRESS_LINE.match(line)
            if match:
                done, total, message = int(match[1]), int(match[2]), match[3]
                self.reporter.progress(done, total, message)
            else:
                other.append(line)
        if other:
            self.last_lines = (self.last_lines + other)[-30:]
            services.job_log(job_id=self.job_id, lines=other[-LOG_LINES_PER_POLL:])
        if metrics_tail is not None:
            by_step: dict[int, JobMetric] = {}
            for line in metrics_tail.lines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    # A diverging run logs NaN or inf, which JSON columns refuse: kept as null.
                    raw = json.loads(line)
                    step = int(raw["step"])
                    values = {
                        key: None
                        if isinstance(value, float) and not math.isfinite(value)
                        else value
                        for key, value in raw.items()
                    }
                    by_step[step] = JobMetric(job_id=self.job_id, step=step, values=values)
            records = list(by_step.values())
            if records:
                # A resumed run logs again the steps after its checkpoint: the latest wins.
                with transaction.atomic():
                    JobMetric.objects.bulk_create(
                        records,
                        update_conflicts=True,
                        unique_fields=["job", "step"],
                        update_fields=["values"],
                    )


def gpu_env() -> dict[str, str]:
    """The worker's GPUs for its jobs' processes (RELSIM_GPU_DEVICES), if it names any."""
    devices = settings.RELSIM_GPU_DEVICES.strip()
    return {"CUDA_VISIBLE_DEVICES": devices} if devices else {}


def run_job_child(
    job_id: int,
    reporter: JobReporter,
    command: list[str],
    *,
    log_path: Path,
    metrics: Path | None = None,
    after: Callable[[], None] | None = None,
) -> ChildOutcome:
    """Run one child for a job; `after()` runs whatever way it ended (a stopped scorer's
    scores are kept), then a cancel or a failure ends the job."""
    outcome = ChildJob(
        job_id, command, reporter=reporter, log_path=log_path, metrics_path=metrics, env=gpu_env()
    ).run()
    if after is not None:
        after()
    if outcome.cancelled:
        raise JobCancelled("stopped at the user's request")
    if outcome.returncode != 0:
        tail = "\n".join(outcome.last_lines[-5:])
        raise RuntimeError(f"the child process exited with {outcome.returncode}: {tail}")
    return outcome


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def group_alive(pid: int) -> bool:
    """Whether any process of the group `pid` still runs. Zombies count as gone: a killed
    grandchild waits as one until init reaps it, and holds no memory meanwhile."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: a signal 0 cannot tell zombies apart
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended while we looked
        # "pid (command) state ppid pgrp ...": the command may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pid and fields[0] not in ("Z", "X"):
            return True
    return False
