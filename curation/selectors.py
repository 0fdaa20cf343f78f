"""Reads for curation pages and services."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User

from curation.models import CurrentGroup, Group, Image, InterestLabel
from curation.near_duplicates import close_pairs


def dataset_stats() -> dict[str, int]:
    return {
        "images": Image.objects.count(),
        "labelled": InterestLabel.objects.values("image").distinct().count(),
        "groups": Group.objects.count(),
    }


@dataclass(frozen=True)
class GroupWarning:
    kind: str
    message: str


def group_warnings(members: list[Image]) -> list[GroupWarning]:
    """What to look at before calling a group ready (the captions app adds what its captions
    say, on the page)."""
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
    return warnings


def current_group(user: User) -> Group | None:
    """The group this user adds to, or None (none chosen yet, or that group was deleted)."""
    row = CurrentGroup.objects.filter(user=user).select_related("group").first()
    return row.group if row else None
