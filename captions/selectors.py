"""Reads for caption pages."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from captions.models import Caption, CaptionRevision, EditPresence


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
