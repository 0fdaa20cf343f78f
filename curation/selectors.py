"""Reads for curation pages and services."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q

from captions.models import Caption
from curation.models import Group, Image, InterestLabel
from curation.near_duplicates import close_pairs


def dataset_stats() -> dict[str, int]:
    captions = Caption.objects.aggregate(
        approved=Count("id", filter=Q(status=Caption.Status.APPROVED)),
        drafts=Count("id", filter=Q(status=Caption.Status.DRAFT)),
    )
    return {
        "images": Image.objects.count(),
        "labelled": InterestLabel.objects.values("image").distinct().count(),
        "groups": Group.objects.count(),
        "approved_captions": captions["approved"],
        "draft_captions": captions["drafts"],
    }


@dataclass(frozen=True)
class GroupWarning:
    kind: str
    message: str


def group_warnings(group: Group, members: list[Image]) -> list[GroupWarning]:
    """What to look at before calling a group ready."""
    warnings = []
    limit = settings.RELSIM_GROUP_MAX_SIZE
    if not 2 <= len(members) <= limit:
        warnings.append(
            GroupWarning(
                "size", f"A ready group has 2 to {limit} images; this one has {len(members)}."
            )
        )
    for first, second, distance in close_pairs(members):
        warnings.append(
            GroupWarning(
                "near-duplicate",
                f"{first} and {second} look like near duplicates ({distance} bits apart).",
            )
        )
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
    for caption in elsewhere:
        if caption.text not in own:
            warnings.append(
                GroupWarning(
                    "other-group",
                    f"Some images are also in “{caption.group}”, captioned “{caption.text}”.",
                )
            )
    return warnings
