"""manage.py reap_stale_jobs: fail running jobs whose worker stopped sending heartbeats."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from training.services import jobs_reap_stale


class Command(BaseCommand):
    help = "Mark jobs whose worker died as failed (they can then be retried)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"{jobs_reap_stale()} stale job(s) marked failed.")
