"""manage.py model_job KIND [options]: start a model job (train_relsim, embed, train_captioner,
caption) from a terminal and follow it with a progress bar, on the workers or (--here) in this
process. `embed --baseline NAME` builds a baseline's index instead of a relsim model's."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from core.cli import acting_user
from core.errors import JobInputError
from training import model_services, services
from training.execution import execute_job
from training.model_jobs import INDEX_BASELINES, RESERVED_OPTIONS, relsim_option_names
from training.models import Job

KINDS = {
    "train_relsim": Job.Kind.TRAIN_RELSIM,
    "embed": Job.Kind.EMBED,
    "train_captioner": Job.Kind.TRAIN_CAPTIONER,
    "caption": Job.Kind.CAPTION,
}
POLL_S = 0.5


def parse_option(text: str) -> tuple[str, Any]:
    """`name=value`, the value read as JSON when it parses (numbers, true, lists), else text."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise CommandError(f"--set takes name=value, not {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value


def _caption_params(options: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"target": options["target"]}
    for name in ("limit", "threshold", "model"):
        if options[name] is not None:
            params[name] = options[name]
    return params


def _captioner_params(options: dict[str, Any]) -> dict[str, Any]:
    from training.caption_jobs import RESERVED_CAPTIONER_OPTIONS, captioner_option_names

    config = dict(parse_option(text) for text in options["set"])
    reserved = sorted(set(config) & RESERVED_CAPTIONER_OPTIONS)
    if reserved:
        raise CommandError(f"Set by the job, not by hand: {', '.join(reserved)}")
    unknown = sorted(set(config) - captioner_option_names())
    if unknown:
        raise CommandError(f"Unknown captioner training options: {', '.join(unknown)}")
    params: dict[str, Any] = {"config": config, "gpus": max(1, options["gpus"])}
    if options["name"]:
        params["name"] = options["name"]
    if options["snapshot_job"]:
        params["snapshot_job"] = options["snapshot_job"]
    return params


def _embed_params(options: dict[str, Any]) -> dict[str, Any]:
    if options["baseline"] and options["model"]:
        raise CommandError("embed with --model or --baseline, not both")
    params: dict[str, Any] = {}
    if options["baseline"]:
        params["baseline"] = options["baseline"]
    elif options["model"]:
        params["model"] = options["model"]
    if options["full"]:
        params["full"] = True
    return params


class Command(BaseCommand):
    help = "Start a model job and follow it: train_relsim, embed, train_captioner or caption."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=sorted(KINDS))
        parser.add_argument("--name", default="", help="Name of the trained model.")
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="OPTION=VALUE",
            help="A training option (any field of ml.relsim.TrainConfig), repeatable.",
        )
        parser.add_argument(
            "--snapshot-job", type=int, help="Train on this export job's zip (default: new)."
        )
        parser.add_argument("--gpus", type=int, default=1, help="GPUs (accelerate launch).")
        parser.add_argument(
            "--model", type=int, help="embed, caption: the model to use (default: the active one)."
        )
        parser.add_argument(
            "--baseline",
            choices=list(INDEX_BASELINES),
            help="embed: index the pool with this baseline instead of a relsim model.",
        )
        parser.add_argument("--full", action="store_true", help="embed: embed every image again.")
        parser.add_argument(
            "--target", choices=["groups", "images"], default="groups", help="caption: what for."
        )
        parser.add_argument("--limit", type=int, help="caption: at most this many drafts.")
        parser.add_argument("--threshold", type=float, help="caption images: least filter score.")
        parser.add_argument(
            "--here", action="store_true", help="Run in this process instead of on a worker."
        )
        parser.add_argument("--no-wait", action="store_true", help="Queue it and return.")
        parser.add_argument("--user", help="Act as this user (recorded as the job's creator).")

    def handle(self, *args: Any, **options: Any) -> None:
        kind = KINDS[options["kind"]]
        params = self._params(kind, options)
        user = acting_user(options, "training.add_job")
        if options["here"]:
            job = Job.objects.create(kind=kind, params=params, queue=Job.Queue.GPU, created_by=user)
            self._run_here(job)
        else:
            if "baseline" in params:
                job = model_services.baseline_index_start(
                    baseline=params["baseline"], full=bool(params.get("full")), user=user
                )
            else:
                job = services.job_create(kind=kind, params=params, user=user)
            if job.status == Job.Status.FAILED:
                raise CommandError(job.error)
            if options["no_wait"]:
                self.stdout.write(f"Job #{job.pk} queued on the {job.queue} queue.")
                return
            self.stderr.write(f"Job #{job.pk} ({job.get_kind_display()}); Ctrl-C asks it to stop.")
            try:
                self._follow(job)
            except KeyboardInterrupt:
                services.job_cancel(job=job)
                self.stderr.write("Asked the job to stop; waiting for it to save and end.")
                self._follow(job)
        job.refresh_from_db()
        self.stdout.write(f"Job #{job.pk}: {job.status} {job.progress_message}")
        if job.artifacts:
            self.stdout.write(json.dumps(job.artifacts, indent=2))
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(job.error or f"the job ended {job.status}")

    def _run_here(self, job: Job) -> None:
        """Run the job in this thread; on a terminal a second thread draws its progress bar
        from the job row. Ctrl-C stops the job's process group and marks the job cancelled."""
        self.stderr.write(f"Job #{job.pk} ({job.get_kind_display()}) runs here.")
        if not sys.stderr.isatty():
            execute_job(job.pk, worker="manage.py model_job")
            return
        watcher = threading.Thread(target=self._follow, args=(job,), daemon=True)
        watcher.start()
        try:
            execute_job(job.pk, worker="manage.py model_job")
        except KeyboardInterrupt:
            services.job_mark_cancelled(job_id=job.pk, message="interrupted at the terminal")
            raise CommandError("interrupted") from None
        watcher.join(timeout=5)

    def _params(self, kind: str, options: dict[str, Any]) -> dict[str, Any]:
        if kind == Job.Kind.EMBED:
            return _embed_params(options)
        if kind == Job.Kind.CAPTION:
            return _caption_params(options)
        if kind == Job.Kind.TRAIN_CAPTIONER:
            return _captioner_params(options)
        config = dict(parse_option(text) for text in options["set"])
        unknown = sorted(set(config) - relsim_option_names())
        if unknown:
            raise CommandError(f"Unknown training options: {', '.join(unknown)}")
        reserved = sorted(set(config) & RESERVED_OPTIONS)
        if reserved:
            raise CommandError(f"Set by the job, not by hand: {', '.join(reserved)}")
        if options["gpus"] < 1:
            raise CommandError("--gpus must be at least 1")
        params: dict[str, Any] = {"config": config, "gpus": options["gpus"]}
        if options["name"]:
            params["name"] = options["name"]
        if options["snapshot_job"]:
            params["snapshot_job"] = options["snapshot_job"]
        self._check_options(params)
        return params

    def _check_options(self, params: dict[str, Any]) -> None:
        from ml.relsim import TrainConfig

        trial = {"data_dir": ".", "output_dir": ".", "backbone": ".", **params["config"]}
        try:
            TrainConfig.from_dict(trial).validate()
        except (TypeError, ValueError, JobInputError) as exc:
            raise CommandError(f"The training options are not valid: {exc}") from None

    def _follow(self, job: Job) -> None:
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
                    self.stderr.write(f"[{job.progress:.0%}] {last_message}")
                if job.is_finished:
                    return
                time.sleep(POLL_S)
        finally:
            bar.close()
