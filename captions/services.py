"""Writes for captions: create, edit (optimistic locking), approve, reject - each one
recorded as a revision."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from captions.models import Caption, CaptionRevision
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


def caption_approve(*, caption: Caption, reviewer: AbstractBaseUser) -> Caption:
    return _review(caption, reviewer, Caption.Status.APPROVED, CaptionRevision.Action.APPROVE, "")


def caption_reject(*, caption: Caption, reviewer: AbstractBaseUser, reason: str) -> Caption:
    if not reason.strip():
        raise ValueError("a rejection needs a reason")
    return _review(
        caption, reviewer, Caption.Status.REJECTED, CaptionRevision.Action.REJECT, reason
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
            others.update(status=Caption.Status.DRAFT)
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
