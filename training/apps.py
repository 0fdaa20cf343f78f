from __future__ import annotations

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "training"

    def ready(self) -> None:
        # Runner modules register themselves by kind (audit_jobs also starts its job when
        # captions records an audit decision).
        from training import (  # noqa: F401
            audit_jobs,
            caption_jobs,
            dataset_jobs,
            filter_jobs,
            model_jobs,
        )
