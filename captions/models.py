"""Anonymous captions of groups or single images, and the full history of each."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.splits import Split
from curation.models import Group, Image

# A reviewer's note to the author when returning a caption; long enough for a few sentences.
REJECT_COMMENT_MAX_CHARS = 1000


class Caption(models.Model):
    """One anonymous caption, for a group or for a single image (never both)."""

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        # An approved caption replaced by a newer approved text: kept for the history.
        SUPERSEDED = "superseded", "superseded"

    class Source(models.TextChoices):
        HUMAN = "human", "human"
        MODEL = "model", "model"
        IMPORT = "import", "import"

    group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.CASCADE, related_name="captions"
    )
    image = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.CASCADE, related_name="captions"
    )
    text = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.HUMAN)
    model_name = models.CharField(max_length=200, blank=True)
    prompt_version = models.CharField(max_length=50, blank=True)
    # The drafting job that wrote a model draft: its batch, audited as a whole. By name, as
    # captions sits below training; kept when the job row goes.
    draft_job = models.ForeignKey(
        "training.Job",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="drafts",
    )
    # Split of a single-image caption; a group caption follows its group's split.
    split = models.CharField(max_length=5, choices=Split.choices, blank=True)
    # Optimistic locking: every save states the version it was based on.
    version = models.PositiveIntegerField(default=1)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="authored_captions",
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reviewed_captions",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reject_reason = models.CharField(max_length=100, blank=True)
    reject_comment = models.CharField(max_length=REJECT_COMMENT_MAX_CHARS, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        permissions = [("review_caption", "Can approve or reject captions")]
        constraints = [
            models.CheckConstraint(
                condition=(Q(group__isnull=False, image__isnull=True))
                | (Q(group__isnull=True, image__isnull=False)),
                name="caption_is_for_a_group_or_an_image",
            ),
            models.CheckConstraint(condition=~Q(text=""), name="caption_text_not_empty"),
            models.CheckConstraint(
                condition=Q(image__isnull=True) | ~Q(split=""),
                name="image_caption_has_split",
            ),
            models.UniqueConstraint(
                fields=["group"],
                condition=Q(status="approved", group__isnull=False),
                name="one_approved_caption_per_group",
            ),
            models.UniqueConstraint(
                fields=["image"],
                condition=Q(status="approved", image__isnull=False),
                name="one_approved_caption_per_image",
            ),
        ]

    def __str__(self) -> str:
        return self.text[:80]


class CaptionRevision(models.Model):
    """One change to a caption: who, when, what it did, the text before and after, and why."""

    class Action(models.TextChoices):
        CREATE = "create", "create"
        EDIT = "edit", "edit"
        APPROVE = "approve", "approve"
        REJECT = "reject", "reject"
        IMPORT = "import", "import"
        # The group's members changed under the caption (details: added and removed ids).
        MEMBERS = "members", "members changed"

    caption = models.ForeignKey(Caption, on_delete=models.CASCADE, related_name="revisions")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    text_before = models.TextField(blank=True)
    text_after = models.TextField()
    status_after = models.CharField(max_length=10, choices=Caption.Status.choices)
    version = models.PositiveIntegerField(help_text="The caption's version after this change.")
    reason = models.CharField(max_length=500, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["caption", "version", "id"]
        constraints = [
            models.UniqueConstraint(fields=["caption", "version"], name="one_revision_per_version"),
        ]

    def __str__(self) -> str:
        return f"{self.action} of caption {self.caption_id} (v{self.version})"


class EditPresence(models.Model):
    """Who has a caption open in the editor; kept fresh by the editor's heartbeat."""

    caption = models.ForeignKey(Caption, on_delete=models.CASCADE, related_name="presences")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["caption", "user"], name="one_presence_per_editor"),
        ]

    def __str__(self) -> str:
        return f"{self.user} on caption {self.caption_id}"


class DraftAudit(models.Model):
    """The audit of one drafting batch: a random sample of its model drafts, drawn once and
    stored so it stays the same, which reviewers judge; then an admin's decision for the
    batch's remaining drafts, with the figures it rested on."""

    class Decision(models.TextChoices):
        ACCEPTED = "accepted", "accepted"
        SENT_BACK = "sent_back", "sent back"

    job = models.OneToOneField("training.Job", on_delete=models.CASCADE, related_name="audit")
    seed = models.BigIntegerField()
    # The sampled captions' ids, in the order drawn.
    sample_ids = models.JSONField(default=list)
    # The batch's model drafts when the sample was drawn.
    batch_size = models.PositiveIntegerField()
    drawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="drawn_audits",
    )
    drawn_at = models.DateTimeField(auto_now_add=True)
    decision = models.CharField(max_length=10, choices=Decision.choices, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="decided_audits",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    # The sample's figures and the rule at the time of the decision.
    figures = models.JSONField(default=dict, blank=True)
    changed = models.PositiveIntegerField(default=0)
    # Remaining drafts the decision left for people: lint errors, or an approved caption
    # already there.
    skipped = models.PositiveIntegerField(default=0)
    # The job that carries the decision out over the remaining drafts.
    apply_job = models.ForeignKey(
        "training.Job",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="applied_audits",
    )

    def __str__(self) -> str:
        return f"audit of batch #{self.job_id}"
