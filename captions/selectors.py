"""Reads for caption pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from captions.models import Caption, CaptionRevision, EditPresence
from curation.models import GroupMember, Image


def other_editors(caption: Caption, user: AbstractBaseUser) -> list[str]:
    since = timezone.now() - timedelta(seconds=settings.RELSIM_PRESENCE_SECONDS)
    return sorted(
        EditPresence.objects.filter(caption=caption, last_seen__gte=since)
        .exclude(user=user)
        .values_list("user__username", flat=True)
    )


def review_queue() -> QuerySet[Caption]:
    return (
        Caption.objects.filter(status=Caption.Status.DRAFT)
        .select_related("group", "image", "author")
        .order_by("created_at", "id")
    )


def original_text(caption: Caption) -> str:
    """The text the caption started with (the draft a model or person first wrote)."""
    first = CaptionRevision.objects.filter(caption=caption).order_by("version", "id").first()
    return first.text_after if first else caption.text


def approved_sibling(caption: Caption) -> Caption | None:
    """The approved caption a draft would replace (same group or image), if any."""
    if caption.status == Caption.Status.APPROVED:
        return None
    siblings = Caption.objects.filter(status=Caption.Status.APPROVED).exclude(pk=caption.pk)
    if caption.group_id:
        return siblings.filter(group=caption.group_id).first()
    return siblings.filter(image=caption.image_id).first()


def members_change(caption: Caption) -> dict[str, Any] | None:
    """How the group's members changed since its caption was last approved, when that is
    why it is back in review: {"added": [Image], "removed": [Image], "revisions": [...]}."""
    if caption.status != Caption.Status.DRAFT or not caption.group_id:
        return None
    approval = (
        caption.revisions.filter(action=CaptionRevision.Action.APPROVE).order_by("-version").first()
    )
    if approval is None:
        return None
    changes = list(
        caption.revisions.filter(
            action=CaptionRevision.Action.MEMBERS, version__gt=approval.version
        ).order_by("version")
    )
    if not changes:
        return None
    then = [int(pk) for pk in approval.details.get("members", [])]
    now = list(
        GroupMember.objects.filter(group=caption.group_id)
        .order_by("position", "id")
        .values_list("image_id", flat=True)
    )
    added = [pk for pk in now if pk not in then]
    removed = [pk for pk in then if pk not in now]
    images = Image.objects.in_bulk(added + removed)
    return {
        "added": [images[pk] for pk in added if pk in images],
        "removed": [images[pk] for pk in removed if pk in images],
        "revisions": changes,
    }


def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """[(kind, words)] with kind in same/del/ins, word by word."""
    import difflib

    old, new = before.split(), after.split()
    pieces: list[tuple[str, str]] = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            pieces.append(("same", " ".join(old[a0:a1])))
        if op in ("delete", "replace"):
            pieces.append(("del", " ".join(old[a0:a1])))
        if op in ("insert", "replace"):
            pieces.append(("ins", " ".join(new[b0:b1])))
    return pieces
