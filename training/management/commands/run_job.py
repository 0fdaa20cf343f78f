"""manage.py run_job (ID | --kind KIND --params JSON): run a job in this process."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from training import services
from training.execution import execute_job
from training.models import Job


class Command(BaseCommand):
    help = "Run a pending job (or a new one) here, without a worker."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job_id", nargs="?", type=int)
        parser.add_argument("--kind", choices=Job.Kind.values)
        parser.add_argument("--params", default="{}", help="JSON object of job parameters.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["job_id"] is None:
            if not options["kind"]:
                raise CommandError("Give a job id, or --kind (and --params) for a new job.")
            try:
                params = json.loads(options["params"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--params is not valid JSON: {exc}") from None
            if not isinstance(params, dict):
                raise CommandError("--params must be a JSON object.")
            job = Job.objects.create(
                kind=options["kind"],
                params=params,
                queue=Job.Queue.GPU if options["kind"] in services.GPU_KINDS else Job.Queue.CPU,
            )
        else:
            found = Job.objects.filter(pk=options["job_id"]).first()
            if found is None:
                raise CommandError(f"No job {options['job_id']}.")
            job = found
        status = execute_job(job.pk, worker="manage.py run_job")
        job.refresh_from_db()
        self.stdout.write(f"Job #{job.pk}: {status or job.status} {job.progress_message}")
        if job.error:
            raise CommandError(job.error)
