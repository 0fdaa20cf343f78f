"""Writes for curation: storing images, importing folders and archives, groups and labels."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import JobCancelled
from core.reports import ImportReport
from core.splits import Split
from curation import storage
from curation.intake import (
    ImageRejected,
    IntakeLimits,
    NormalisedImage,
    SkippedEntry,
    SourceError,
    iter_source,
    make_thumbnail,
    normalise_image,
)
from curation.models import (
    Group,
    GroupMember,
    GroupNegative,
    Image,
    ImageHashBand,
    ImportBatch,
    InterestLabel,
)
from curation.near_duplicates import band_rows
from curation.signals import group_members_changed
from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress


def intake_limits() -> IntakeLimits:
    return IntakeLimits(
        max_bytes=settings.RELSIM_MAX_IMAGE_MB * 2**20,
        max_pixels=settings.RELSIM_MAX_IMAGE_PIXELS,
    )


@dataclass(frozen=True)
class StoredImage:
    image: Image
    created: bool


def image_store(
    *,
    normalised: NormalisedImage,
    source_name: str = "",
    source_url: str = "",
    batch: ImportBatch | None = None,
    user: User | None = None,
) -> StoredImage:
    """Store a normalised image once; the same content again returns the existing row."""
    existing = Image.objects.filter(sha256=normalised.sha256).first()
    if existing is not None:
        return StoredImage(existing, created=False)
    file_name, wrote_file = storage.put_once(storage.image_name(normalised.sha256), normalised.png)
    thumb = make_thumbnail(normalised.png, size=settings.RELSIM_THUMBNAIL_PX)
    thumb_name, wrote_thumb = storage.put_once(storage.thumbnail_name(normalised.sha256), thumb)
    try:
        with transaction.atomic():
            image = Image.objects.create(
                sha256=normalised.sha256,
                md5=normalised.md5,
                width=normalised.width,
                height=normalised.height,
                original_format=normalised.original_format,
                file=file_name,
                thumbnail=thumb_name,
                phash=normalised.phash,
                source_name=source_name[:1000],
                source_url=source_url[:2000],
                batch=batch,
                normalisation_notes=list(normalised.notes),
                created_by=user,
            )
            ImageHashBand.objects.bulk_create(band_rows([image]))
    except IntegrityError:
        # Another importer stored the same content a moment ago: use its row.
        return StoredImage(Image.objects.get(sha256=normalised.sha256), created=False)
    except Exception:
        if wrote_file:
            storage.remove(file_name)
        if wrote_thumb:
            storage.remove(thumb_name)
        raise
    return StoredImage(image, created=True)


def images_import(
    *,
    source: Path,
    user: User | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> ImportReport:
    """Import every image of a folder (recursive), a .zip or a .tar(.gz), or a single file.

    Each file is accepted, found to be a duplicate, or rejected with a reason; one bad file
    never stops the others. Raises SourceError when the source itself cannot be read."""
    limits = intake_limits()
    entries = list(iter_source(source, limits=limits))
    report = ImportReport()
    batch = ImportBatch.objects.create(
        kind=ImportBatch.Kind.IMAGES, source=str(source), created_by=user
    )
    report.batch_id = batch.pk
    total = len(entries)
    for done, entry in enumerate(entries):
        if should_stop():
            raise JobCancelled(report.summary())
        if isinstance(entry, SkippedEntry):
            report.reject(entry.name, entry.reason)
        else:
            _import_one(entry.name, entry.read, limits, batch, user, report)
        progress(done + 1, total, entry.name)
    batch.report = report.as_dict()
    batch.save(update_fields=["report"])
    return report


def _import_one(
    name: str,
    read: object,
    limits: IntakeLimits,
    batch: ImportBatch,
    user: User | None,
    report: ImportReport,
) -> None:
    try:
        data = read()  # type: ignore[operator]
        normalised = normalise_image(data, limits=limits)
    except ImageRejected as exc:
        report.reject(name, exc.reason)
        return
    except (OSError, SourceError) as exc:
        report.reject(name, f"could not be read: {exc}")
        return
    stored = image_store(normalised=normalised, source_name=name, batch=batch, user=user)
    if stored.created:
        report.accepted += 1
        if normalised.notes:
            report.normalised.append({"name": name, "notes": list(normalised.notes)})
    else:
        report.duplicate(name, stored.image.pk)


# --- Groups -------------------------------------------------------------------------------


def group_create(
    *,
    title: str,
    images: Iterable[Image] = (),
    split: str = Split.TRAIN,
    notes: str = "",
    user: User | None = None,
    import_key: str | None = None,
) -> Group:
    if not title.strip():
        raise ValidationError("A group needs a title.")
    if split not in Split.values:
        raise ValidationError(f"Unknown split {split!r}.")
    with transaction.atomic():
        group = Group.objects.create(
            title=title.strip()[:200],
            split=split,
            notes=notes,
            created_by=user,
            import_key=import_key,
        )
        group_add_images(group=group, images=images, user=user)
    return group


def group_add_images(*, group: Group, images: Iterable[Image], user: User | None = None) -> int:
    """Append images to a group in order; images already in it are left where they are."""
    with transaction.atomic():
        locked = Group.objects.select_for_update().get(pk=group.pk)
        present = set(locked.members.values_list("image_id", flat=True))
        last = locked.members.order_by("-position").values_list("position", flat=True).first()
        position = -1 if last is None else last
        added = []
        for image in images:
            if image.pk in present:
                continue
            position += 1
            present.add(image.pk)
            added.append(GroupMember(group=locked, image=image, position=position))
        GroupMember.objects.bulk_create(added)
        if added:
            _members_changed(locked, [m.image_id for m in added], [], user)
    return len(added)


def group_set_state(*, group: Group, state: str) -> Group:
    """Change a group's state; "ready" needs 2 to RELSIM_GROUP_MAX_SIZE members."""
    if state not in Group.State.values:
        raise ValidationError(f"Unknown group state {state!r}.")
    if state == Group.State.READY:
        size = group.members.count()
        limit = settings.RELSIM_GROUP_MAX_SIZE
        if not 2 <= size <= limit:
            raise ValidationError(f"A ready group needs 2 to {limit} images; this one has {size}.")
    group.state = state
    group.save(update_fields=["state", "updated_at"])
    return group


# --- Interest labels ----------------------------------------------------------------------


def interest_label_set(*, image: Image, annotator: User, interesting: bool) -> InterestLabel:
    label, _ = InterestLabel.objects.update_or_create(
        image=image, annotator=annotator, defaults={"interesting": interesting}
    )
    return label


def group_remove_image(*, group: Group, image: Image, user: User | None = None) -> None:
    with transaction.atomic():
        removed, _ = GroupMember.objects.filter(group=group, image=image).delete()
        _renumber(group)
        Group.objects.filter(pk=group.pk).update(updated_at=timezone.now())
        if removed:
            _members_changed(group, [], [image.pk], user)


def _members_changed(group: Group, added: list[int], removed: list[int], user: User | None) -> None:
    # Inside the caller's transaction: a caption is sent back to review with the change or
    # the change does not happen.
    group_members_changed.send(sender=Group, group=group, added=added, removed=removed, actor=user)


def group_reorder(*, group: Group, image_ids: list[int]) -> None:
    """Put members in the given order; the list must name every member exactly once."""
    with transaction.atomic():
        members = {
            m.image_id: m for m in GroupMember.objects.select_for_update().filter(group=group)
        }
        if sorted(image_ids) != sorted(members):
            raise ValidationError("The new order must list every image of the group once.")
        for position, image_id in enumerate(image_ids):
            members[image_id].position = position
        GroupMember.objects.bulk_update(members.values(), ["position"])
        Group.objects.filter(pk=group.pk).update(updated_at=timezone.now())


def _renumber(group: Group) -> None:
    members = list(GroupMember.objects.filter(group=group).order_by("position", "id"))
    for position, member in enumerate(members):
        member.position = position
    GroupMember.objects.bulk_update(members, ["position"])


def group_update(*, group: Group, title: str, notes: str, split: str) -> Group:
    if not title.strip():
        raise ValidationError("A group needs a title.")
    if split not in Split.values:
        raise ValidationError(f"Unknown split {split!r}.")
    group.title, group.notes, group.split = title.strip()[:200], notes, split
    group.save(update_fields=["title", "notes", "split", "updated_at"])
    return group


def group_mark_negative(
    *, group: Group, image: Image, user: User | None, negative: bool = True
) -> None:
    if negative:
        GroupNegative.objects.get_or_create(group=group, image=image, defaults={"created_by": user})
    else:
        GroupNegative.objects.filter(group=group, image=image).delete()
