"""Job: every background job is a row here - its state, progress, heartbeat and results."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Job(models.Model):
    class Kind(models.TextChoices):
        IMPORT_IMAGES = "import_images", "import images"
        IMPORT_SEED_GROUPS = "import_seed_groups", "import seed groups"
        IMPORT_CAPTIONS = "import_captions", "import captions"
        EXPORT_DATASET = "export_dataset", "export data set"
        FILTER = "filter", "filter images"
        CAPTION = "caption", "draft captions"
        TRAIN_RELSIM = "train_relsim", "train relsim"
        EMBED = "embed", "embed images"
        EVALUATE = "evaluate", "evaluate"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    class Queue(models.TextChoices):
        CPU = "cpu", "cpu"
        GPU = "gpu", "gpu"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    queue = models.CharField(max_length=10, choices=Queue.choices, default=Queue.CPU)
    progress = models.FloatField(default=0.0, help_text="Fraction done, 0 to 1.")
    progress_message = models.CharField(max_length=500, blank=True)
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    artifacts = models.JSONField(default=dict, blank=True)
    # Where a resumed run starts again (e.g. a checkpoint path); set by the job as it runs.
    resume_point = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0.0, progress__lte=1.0),
                name="job_progress_is_a_fraction",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}


class WorkerBeat(models.Model):
    """A Celery worker's proof of life: which queues it takes and when it last reported.
    Pages use it to say that a pending job has no worker to run it."""

    name = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({', '.join(self.queues)})"
