"""manage.py model_job KIND [options]: start a model job (train_relsim, embed, train_captioner,
caption) from a terminal and follow it with a progress bar, on the workers or (--here) in this
process. `embed --baseline NAME` builds a baseline's index instead of a relsim model's."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.cli import acting_user
from core.errors import JobInputError
from training import job_cli, model_services, services
from training.model_jobs import INDEX_BASELINES, RESERVED_OPTIONS, relsim_option_names
from training.models import Job

KINDS = {
    "train_relsim": Job.Kind.TRAIN_RELSIM,
    "embed": Job.Kind.EMBED,
    "train_captioner": Job.Kind.TRAIN_CAPTIONER,
    "caption": Job.Kind.CAPTION,
}


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
            job_cli.run_here(job, self.stderr, worker="manage.py model_job")
        else:
            if "baseline" in params:
                job = model_services.baseline_index_start(
                    baseline=params["baseline"], full=bool(params.get("full")), user=user
                )
            else:
                job = services.job_create(kind=kind, params=params, user=user)
            if options["no_wait"] and job.status != Job.Status.FAILED:
                self.stdout.write(f"Job #{job.pk} queued on the {job.queue} queue.")
                return
            job_cli.wait_on_worker(job, self.stdout, self.stderr, label="Model job")
        job_cli.report_end(job, self.stdout, label="Model job")

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
