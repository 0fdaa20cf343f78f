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
        TRAIN_CAPTIONER = "train_captioner", "train captioner"
        TRAIN_RELSIM = "train_relsim", "train relsim"
        EMBED = "embed", "embed images"
        EVALUATE = "evaluate", "evaluate"
        BENCHMARK = "benchmark", "retrieval benchmark"
        JUDGE = "judge", "judge retrievals"
        AUDIT_APPLY = "audit_apply", "apply an audit decision"

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
    # GPUs its jobs may use (training.gpu_count); 0 for a CPU-only worker.
    gpus = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({', '.join(self.queues)})"


class JobMetric(models.Model):
    """One record of a training run's metrics file (loss, lr, throughput at a step), copied
    to the database as the run writes it so pages can draw the curves while it runs."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    values = models.JSONField(default=dict)

    class Meta:
        ordering = ["job", "step"]
        constraints = [
            models.UniqueConstraint(fields=["job", "step"], name="job_metric_once_per_step"),
        ]

    def __str__(self) -> str:
        return f"job #{self.job_id} step {self.step}"


class TrainedModel(models.Model):
    """A model the app trained or imported, once its files are complete. One model per kind
    is active: the one jobs and pages use unless told otherwise."""

    class Kind(models.TextChoices):
        RELSIM = "relsim", "relsim"
        CAPTIONER = "captioner", "captioner"
        FILTER = "filter", "interest filter"
        TUNED_BASELINE = "tuned_baseline", "tuned baseline"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=200)
    folder = models.CharField(max_length=1000, help_text="The checkpoint folder.")
    base_vlm = models.CharField(max_length=1000, blank=True)
    job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="trained_models"
    )
    # The export the model learnt from (a zip under the data directory; never rewritten).
    snapshot = models.CharField(max_length=1000, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(is_active=True),
                name="one_active_model_per_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} {self.name}"


class EmbeddingIndex(models.Model):
    """An embedding index folder over pool images (ids are image ids), made by a relsim
    model or a baseline; recorded once the folder is complete."""

    model = models.ForeignKey(
        TrainedModel, null=True, blank=True, on_delete=models.CASCADE, related_name="indexes"
    )
    baseline = models.CharField(max_length=100, blank=True)
    folder = models.CharField(max_length=1000)
    count = models.PositiveIntegerField()
    dim = models.PositiveIntegerField()
    job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="indexes"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    (models.Q(model__isnull=False) & models.Q(baseline=""))
                    | (models.Q(model__isnull=True) & ~models.Q(baseline=""))
                ),
                name="index_made_by_a_model_or_a_baseline",
            ),
        ]

    def __str__(self) -> str:
        return f"index #{self.pk} ({self.source_name}, {self.count} images)"

    @property
    def source_name(self) -> str:
        return self.model.name if self.model is not None else self.baseline


class FilterScore(models.Model):
    """An interest filter's score of one pool image: P("Yes"), kept per model so that a
    newly activated filter brings its own scores to the pool (Image.filter_score)."""

    image = models.ForeignKey(
        "curation.Image", on_delete=models.CASCADE, related_name="filter_scores"
    )
    model = models.ForeignKey(TrainedModel, on_delete=models.CASCADE, related_name="filter_scores")
    score = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model"], name="one_filter_score_per_image_and_model"
            ),
        ]
        # The histogram and the keep-rate threshold read one model's scores in order.
        indexes = [models.Index(fields=["model", "score"], name="filter_score_by_model")]

    def __str__(self) -> str:
        return f"{self.score:.3f} for image #{self.image_id} by model #{self.model_id}"
