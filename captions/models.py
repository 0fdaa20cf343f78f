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
