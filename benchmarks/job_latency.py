"""From "Train" to the first progress on the job page, with an idle worker: how long each
stage takes when a relsim training job is started (the demo's tiny VLM, on this machine).

    .venv/bin/python -m benchmarks.job_latency            # 3 runs
    .venv/bin/python -m benchmarks.job_latency --runs 5

A private data directory (SQLite, the folder broker) and one real Celery worker on the gpu
queue; each run creates the job the way the train form does (services.job_create) and polls
its row every 20 ms. Stages, measured from the create call:
  claimed        the worker took the job (status running)
  first progress the job row shows its first progress message
  child started  the training process reported its first line
  first step     the first training step's metrics reached the database
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("claimed", "first progress", "child started", "first step")


def _environment(data_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "RELSIM_DATA_DIR": str(data_dir),
        "DATABASE_URL": "",
        "CELERY_BROKER_URL": "",
        "RELSIM_JOB_PROGRESS_MS": "200",
        "RELSIM_WORKER_BEAT_SECONDS": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONUNBUFFERED": "1",
    }
    return env


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu"]
    command += ["--pool", "solo", "--concurrency", "1", "-n", "bench@%h", "--loglevel", "INFO"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def _one_run(timeout: float) -> dict[str, float]:
    from training import services
    from training.models import Job, JobMetric

    started = time.perf_counter()
    job = services.job_create(
        kind=Job.Kind.TRAIN_RELSIM,
        params={
            "name": "latency",
            "config": {"max_steps": 2, "log_every": 1},
            "build_index": False,
        },
    )
    seen: dict[str, float] = {}
    while len(seen) < len(STAGES):
        elapsed = time.perf_counter() - started
        if elapsed > timeout:
            raise RuntimeError(f"job #{job.pk} timed out; seen {seen}")
        job.refresh_from_db()
        if job.status in (Job.Status.FAILED, Job.Status.CANCELLED):
            raise RuntimeError(f"job #{job.pk} {job.status}: {job.error}")
        if job.status != Job.Status.PENDING:
            seen.setdefault("claimed", elapsed)
        if job.progress_message:
            seen.setdefault("first progress", elapsed)
        if job.progress_message and "snapshot" not in job.progress_message:
            seen.setdefault("child started", elapsed)
        if JobMetric.objects.filter(job=job).exists():
            seen.setdefault("first step", elapsed)
        time.sleep(0.02)
    while not job.is_finished:
        time.sleep(0.2)
        job.refresh_from_db()
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="relsim-latency-"))
    env = _environment(data_dir)
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"})
    import django

    django.setup()
    from django.core.management import call_command

    from captions.importers import dataset_import
    from ml import synthetic
    from training.model_paths import tiny_vlm_path
    from training.selectors import live_workers

    call_command("migrate", verbosity=0)
    synthetic.generate_dataset(data_dir / "set", seed=0, per_relation=4, size=112)
    dataset_import(folder=data_dir / "set")
    tiny_vlm_path()  # built once, as `make run`'s first training would
    load_before = os.getloadavg()
    worker = _start_worker(env, data_dir / "worker.log")
    try:
        deadline = time.monotonic() + 60
        while not live_workers("gpu"):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError((data_dir / "worker.log").read_text()[-2000:])
            time.sleep(0.2)
        time.sleep(2)  # idle: the worker has settled
        runs = []
        for n in range(args.runs):
            runs.append(_one_run(args.timeout))
            print(f"run {n + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in runs[-1].items()))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(
        f"\nCPUs {os.cpu_count()}, load average before {load_before[0]:.2f}, "
        f"after {os.getloadavg()[0]:.2f} (1 min)"
    )
    print(f"{'stage (from the click)':<24} {'median s':>9} {'max s':>7}")
    for stage in STAGES:
        values = [run[stage] for run in runs]
        print(f"{stage:<24} {statistics.median(values):>9.2f} {max(values):>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
