from __future__ import annotations

from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "evaluation"

    def ready(self) -> None:
        # Runner modules register themselves by kind.
        from evaluation import benchmark_jobs, judge_jobs  # noqa: F401
