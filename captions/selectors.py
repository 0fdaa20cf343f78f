"""Reads for caption pages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from captions.models import Caption, CaptionRevision, EditPresence
from curation.models import Group, GroupMember, Image
from curation.selectors import GroupWarning


def other_editors(caption: Caption, user: User) -> list[str]:
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


def review_queue_page() -> QuerySet[Caption]:
    """The review queue with only what its page shows of each draft, group, image and author."""
    return review_queue().only(
        "text",
        "source",
        "model_name",
        "prompt_version",
        "group__title",
        "image__thumbnail",
        "author__username",
    )


@dataclass(frozen=True)
class Thumbnail:
    """An image as a list shows it: its id and its thumbnail's URL ("" while it has none)."""

    pk: int
    url: str


_THUMBNAILS = Image._meta.get_field("thumbnail")


def thumbnail(image_id: int, name: str | None) -> Thumbnail:
    """What `image.thumbnail.url` gives, from the stored name alone (no Image loaded)."""
    return Thumbnail(image_id, _THUMBNAILS.storage.url(name) if name else "")


def group_thumbnails(group_ids: Iterable[int], *, per_group: int) -> dict[int, list[Thumbnail]]:
    """The first `per_group` members of each group, in order, in one query: a window ranks
    the members so that a large group costs no more than a small one."""
    place = Window(
        RowNumber(), partition_by=F("group_id"), order_by=(F("position").asc(), F("id").asc())
    )
    first = (
        GroupMember.objects.filter(group_id__in=list(group_ids))
        .annotate(place=place)
        .filter(place__lte=per_group)
        .order_by("group_id", "position", "id")
        .values_list("group_id", "image_id", "image__thumbnail")
    )
    by_group: dict[int, list[Thumbnail]] = {}
    for group_id, image_id, name in first:
        by_group.setdefault(group_id, []).append(thumbnail(image_id, name))
    return by_group


def editable_caption(group: Group | None, image: Image | None) -> Caption | None:
    """The caption the editor works on: the newest draft; else the newest caption when it
    was rejected (its author revises it); else the approved one."""
    captions = Caption.objects.filter(group=group) if group else Caption.objects.filter(image=image)
    draft = captions.filter(status=Caption.Status.DRAFT).order_by("-updated_at").first()
    if draft is not None:
        return draft
    newest = (
        captions.exclude(status=Caption.Status.SUPERSEDED)
        .select_related("reviewer")
        .order_by("-id")
        .first()
    )
    if newest is not None and newest.status == Caption.Status.REJECTED:
        return newest
    return captions.filter(status=Caption.Status.APPROVED).first()


def returned_to(user: User) -> QuerySet[Caption]:
    """The user's rejected captions that nobody has followed with a newer caption yet."""
    newer = Caption.objects.filter(
        Q(group=OuterRef("group")) | Q(image=OuterRef("image")), pk__gt=OuterRef("pk")
    ).exclude(status=Caption.Status.SUPERSEDED)
    return (
        Caption.objects.filter(status=Caption.Status.REJECTED, author=user)
        .exclude(Exists(newer))
        .select_related("group", "image", "reviewer")
        .order_by("-reviewed_at", "-id")
    )


def returned_count(user: User) -> int:
    return returned_to(user).count()


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


def members_in_order(group_ids: Iterable[int]) -> dict[int, list[int]]:
    """Each group's image ids in the group's own order, in one query: what an approval of a
    group caption records, so that a later change of members can be shown."""
    found: dict[int, list[int]] = {group_id: [] for group_id in group_ids}
    rows = (
        GroupMember.objects.filter(group_id__in=list(found))
        .order_by("group_id", "position", "id")
        .values_list("group_id", "image_id")
    )
    for group_id, image_id in rows:
        found[group_id].append(image_id)
    return found


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


# --- What curation's pages show of captions (through the caption_panels template tags) ---


def caption_counts() -> dict[str, int]:
    return Caption.objects.aggregate(
        approved=Count("id", filter=Q(status=Caption.Status.APPROVED)),
        drafts=Count("id", filter=Q(status=Caption.Status.DRAFT)),
    )


def image_captions(image: Image) -> dict[str, QuerySet[Caption]]:
    """The image's own captions, and the approved captions of the groups it is in."""
    return {
        "captions": Caption.objects.filter(image=image).order_by("-updated_at"),
        "group_captions": Caption.objects.filter(
            group__members__image=image, status=Caption.Status.APPROVED
        ).select_related("group"),
    }


def live_captions_by_group(groups: Iterable[Group]) -> dict[int, list[Caption]]:
    """Approved and draft captions of each group, in one query for a whole list."""
    by_group: dict[int, list[Caption]] = {group.pk: [] for group in groups}
    live = Caption.objects.filter(
        group__in=list(by_group), status__in=[Caption.Status.APPROVED, Caption.Status.DRAFT]
    ).only("id", "group_id", "status", "text")
    for caption in live:
        if caption.group_id is not None:
            by_group[caption.group_id].append(caption)
    return by_group


def other_group_warnings(group: Group, members: list[Image]) -> list[GroupWarning]:
    """Members that are also in another group whose approved caption differs from this one's."""
    own = set(
        Caption.objects.filter(group=group, status=Caption.Status.APPROVED).values_list(
            "text", flat=True
        )
    )
    elsewhere = (
        Caption.objects.filter(group__members__image__in=members, status=Caption.Status.APPROVED)
        .exclude(group=group)
        .select_related("group")
        .distinct()
    )
    return [
        GroupWarning(
            "other-group",
            f"Some images are also in “{caption.group}”, captioned “{caption.text}”.",
        )
        for caption in elsewhere
        if caption.text not in own
    ]
