"""Writes for captions: create, edit (optimistic locking), approve, reject - each one
recorded as a revision."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from captions.models import Caption, CaptionRevision, EditPresence
from captions.text import clean_caption_text
from curation.models import Group, Image


class StaleCaption(Exception):
    """The caption changed since the version the edit was based on."""

    def __init__(self, caption: Caption) -> None:
        super().__init__(f"caption {caption.pk} is at version {caption.version}")
        self.current = caption


def caption_create(
    *,
    text: str,
    group: Group | None = None,
    image: Image | None = None,
    split: str = "",
    status: str = Caption.Status.DRAFT,
    source: str = Caption.Source.HUMAN,
    author: AbstractBaseUser | None = None,
    model_name: str = "",
    prompt_version: str = "",
) -> Caption:
    cleaned = clean_caption_text(text)
    if image is not None and not split:
        split = "train"
    with transaction.atomic():
        caption = Caption.objects.create(
            group=group,
            image=image,
            text=cleaned,
            split=split if image is not None else "",
            status=status,
            source=source,
            author=author,
            model_name=model_name,
            prompt_version=prompt_version,
            reviewed_at=timezone.now() if status != Caption.Status.DRAFT else None,
        )
        action = (
            CaptionRevision.Action.IMPORT
            if source == Caption.Source.IMPORT
            else CaptionRevision.Action.CREATE
        )
        _record(caption, actor=author, action=action, before="")
    return caption


def caption_edit(
    *, caption: Caption, text: str, based_on_version: int, editor: AbstractBaseUser | None
) -> Caption:
    """Change the text if nobody changed the caption since `based_on_version`."""
    cleaned = clean_caption_text(text)
    with transaction.atomic():
        before = Caption.objects.select_for_update().get(pk=caption.pk)
        updated = Caption.objects.filter(pk=caption.pk, version=based_on_version).update(
            text=cleaned, version=F("version") + 1, updated_at=timezone.now()
        )
        if updated != 1:
            raise StaleCaption(before)
        caption.refresh_from_db()
        _record(caption, actor=editor, action=CaptionRevision.Action.EDIT, before=before.text)
    return caption


class ReviewNotAllowed(Exception):
    """The reviewer may not review this caption (e.g. their own, when that is not allowed)."""


def check_may_review(caption: Caption, reviewer: AbstractBaseUser) -> None:
    if not reviewer.has_perm("captions.review_caption"):
        raise ReviewNotAllowed("You may not review captions.")
    own = caption.author_id is not None and caption.author_id == reviewer.pk
    if own and not settings.RELSIM_ALLOW_SELF_APPROVAL:
        raise ReviewNotAllowed("Authors do not review their own captions.")


def caption_approve(
    *,
    caption: Caption,
    reviewer: AbstractBaseUser,
    text: str | None = None,
    based_on_version: int | None = None,
) -> Caption:
    """Approve, optionally with an edit first (both or neither happen)."""
    check_may_review(caption, reviewer)
    with transaction.atomic():
        if text is not None and clean_caption_text(text) != caption.text:
            caption = caption_edit(
                caption=caption,
                text=text,
                based_on_version=caption.version if based_on_version is None else based_on_version,
                editor=reviewer,
            )
        elif based_on_version is not None and based_on_version != caption.version:
            raise StaleCaption(caption)
        return _review(
            caption, reviewer, Caption.Status.APPROVED, CaptionRevision.Action.APPROVE, ""
        )


def caption_reject(*, caption: Caption, reviewer: AbstractBaseUser, reason: str) -> Caption:
    check_may_review(caption, reviewer)
    if reason not in settings.RELSIM_REJECT_REASONS:
        raise ValueError(f"choose a reason from: {', '.join(settings.RELSIM_REJECT_REASONS)}")
    return _review(
        caption, reviewer, Caption.Status.REJECTED, CaptionRevision.Action.REJECT, reason
    )


def captions_bulk_approve(*, captions: list[Caption], reviewer: AbstractBaseUser) -> dict[str, int]:
    done = skipped = 0
    for caption in captions:
        try:
            caption_approve(caption=caption, reviewer=reviewer)
        except ReviewNotAllowed:
            skipped += 1
        else:
            done += 1
    return {"approved": done, "skipped": skipped}


def presence_touch(*, caption: Caption, user: AbstractBaseUser) -> None:
    EditPresence.objects.update_or_create(
        caption=caption, user=user, defaults={"last_seen": timezone.now()}
    )


def _review(
    caption: Caption, reviewer: AbstractBaseUser, status: str, action: str, reason: str
) -> Caption:
    with transaction.atomic():
        if status == Caption.Status.APPROVED:
            # One approved caption per group or image: the previous one steps back to draft.
            others = Caption.objects.filter(status=Caption.Status.APPROVED).exclude(pk=caption.pk)
            others = (
                others.filter(group=caption.group_id)
                if caption.group_id
                else others.filter(image=caption.image_id)
            )
            for other in others.select_for_update():
                other.status = Caption.Status.DRAFT
                other.version += 1
                other.save(update_fields=["status", "version", "updated_at"])
                _record(
                    other,
                    actor=reviewer,
                    action=CaptionRevision.Action.EDIT,
                    before=other.text,
                    reason="another caption was approved",
                )
        Caption.objects.filter(pk=caption.pk).update(
            status=status,
            reviewer=reviewer,
            reviewed_at=timezone.now(),
            reject_reason=reason,
            version=F("version") + 1,
        )
        caption.refresh_from_db()
        _record(caption, actor=reviewer, action=action, before=caption.text, reason=reason)
    return caption


def _record(
    caption: Caption,
    *,
    actor: AbstractBaseUser | None,
    action: str,
    before: str,
    reason: str = "",
) -> None:
    CaptionRevision.objects.create(
        caption=caption,
        actor=actor,
        action=action,
        text_before=before,
        text_after=caption.text,
        status_after=caption.status,
        version=caption.version,
        reason=reason,
    )
