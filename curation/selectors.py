"""Reads for curation pages and services."""

from __future__ import annotations

from django.db.models import Count, Q

from captions.models import Caption
from curation.models import Group, Image, InterestLabel


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
