"""Images (content-addressed), import batches, interest labels and groups of images."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models

from core.splits import Split


class ImportBatch(models.Model):
    """One run of an importer: where the images came from and what happened to each."""

    class Kind(models.TextChoices):
        IMAGES = "images", "images (folder or archive)"
        SEED_GROUPS = "seed_groups", "seed groups (seed_group.json)"
        CAPTIONS = "captions", "captions (anonymous_captions_*.jsonl)"
        DATASET = "dataset", "exported data set"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    source = models.CharField(max_length=1000, help_text="Path, archive or file name imported.")
    report = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} from {self.source}"


def image_upload_to(instance: Image, filename: str) -> str:
    return f"images/{instance.sha256[:2]}/{instance.sha256}.png"


def thumbnail_upload_to(instance: Image, filename: str) -> str:
    return f"thumbs/{instance.sha256[:2]}/{instance.sha256}{Path(filename).suffix}"


class Image(models.Model):
    """An image stored once per content: always an 8-bit RGB PNG, addressed by its sha256."""

    sha256 = models.CharField(max_length=64, unique=True)
    # md5 of the stored PNG: the released formats name images by it.
    md5 = models.CharField(max_length=32, db_index=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    original_format = models.CharField(max_length=16)
    file = models.FileField(upload_to=image_upload_to, max_length=200)
    thumbnail = models.FileField(upload_to=thumbnail_upload_to, max_length=200, blank=True)
    # 64-bit difference hash as 16 hex digits, for near-duplicate checks.
    phash = models.CharField(max_length=16, db_index=True)
    # Probability of "relationally interesting" from the latest filter run, if any.
    filter_score = models.FloatField(null=True, blank=True, db_index=True)
    source_name = models.CharField(max_length=1000, blank=True)
    source_url = models.URLField(max_length=2000, blank=True)
    batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="images"
    )
    normalisation_notes = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(width__gt=0, height__gt=0), name="image_has_positive_size"
            ),
        ]

    def __str__(self) -> str:
        return self.source_name or self.sha256[:12]


class InterestLabel(models.Model):
    """An annotator's yes/no: is this image relationally interesting?"""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="interest_labels")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="interest_labels"
    )
    interesting = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["image", "annotator"], name="one_interest_label_per_annotator_and_image"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} says {'yes' if self.interesting else 'no'} to {self.image}"


class Group(models.Model):
    """Images that share one underlying logic; it gets one anonymous caption."""

    class State(models.TextChoices):
        DRAFT = "draft", "draft"
        READY = "ready", "ready"
        ARCHIVED = "archived", "archived"

    title = models.CharField(max_length=200)
    notes = models.TextField(blank=True)
    split = models.CharField(max_length=5, choices=Split.choices, default=Split.TRAIN)
    state = models.CharField(max_length=10, choices=State.choices, default=State.DRAFT)
    # Set by importers: identifies the same imported group so a re-import changes nothing.
    import_key = models.CharField(max_length=64, null=True, blank=True, unique=True)
    images = models.ManyToManyField(Image, through="GroupMember", related_name="groups")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title


class GroupMember(models.Model):
    """An image's place in a group; an image may belong to several groups."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="members")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="memberships")
    position = models.PositiveIntegerField()
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["group", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["group", "image"], name="image_once_per_group"),
        ]

    def __str__(self) -> str:
        return f"{self.image} in {self.group} at {self.position}"


class ImageHashBand(models.Model):
    """One band of an image's 64-bit perceptual hash, for near-duplicate look-ups.

    The hash is cut into NEAR_DUPLICATE_BANDS bands; two hashes within
    NEAR_DUPLICATE_BANDS - 1 bits of each other agree exactly on at least one band
    (pigeonhole), so an indexed equality query finds every candidate."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="hash_bands")
    band = models.PositiveSmallIntegerField()
    value = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["band", "value"], name="hash_band_lookup")]
        constraints = [
            models.UniqueConstraint(fields=["image", "band"], name="one_value_per_hash_band"),
        ]

    def __str__(self) -> str:
        return f"band {self.band} of {self.image_id}"


class LabelLease(models.Model):
    """An image handed to one annotator by the labelling queue, so no one else gets it
    until the lease expires."""

    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="lease")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="label_leases"
    )
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.image} leased to {self.annotator} until {self.expires_at}"


class GroupNegative(models.Model):
    """An image marked as "not this logic" for a group; steers "find similar" away."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="negatives")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="negative_for")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "image"], name="negative_once_per_group"),
        ]

    def __str__(self) -> str:
        return f"{self.image} is not {self.group}"


class CurrentGroup(models.Model):
    """The group that a user's `a` and "Add" buttons add to, kept across logins and devices."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="current_group",
    )
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} adds to {self.group}"
