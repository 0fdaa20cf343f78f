"""The image pool: filters validated from the query string, and keyset paging that costs
the same on page 1 and page 2,000."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from core.ids import parse_id
from curation.models import Group, GroupMember, Image, ImportBatch, InterestLabel

LABEL_CHOICES = [
    ("", "any"),
    ("unlabelled", "unlabelled by anyone"),
    ("mine-none", "not labelled by me"),
    ("mine-yes", "my label: yes"),
    ("mine-no", "my label: no"),
    ("any-yes", "anyone said yes"),
    ("any-no", "anyone said no"),
]
SORT_CHOICES = [
    ("new", "newest first"),
    ("old", "oldest first"),
    ("score-high", "filter score, high first"),
    ("score-low", "filter score, low first"),
]


class PoolFilterForm(forms.Form):
    label = forms.ChoiceField(choices=LABEL_CHOICES, required=False)
    group = forms.CharField(required=False, max_length=20)
    batch = forms.IntegerField(required=False, min_value=1)
    score_min = forms.FloatField(required=False, min_value=0.0, max_value=1.0)
    score_max = forms.FloatField(required=False, min_value=0.0, max_value=1.0)
    sort = forms.ChoiceField(choices=SORT_CHOICES, required=False)
    after = forms.CharField(required=False, max_length=60)
    before = forms.CharField(required=False, max_length=60)

    def clean_group(self) -> str:
        value: str = self.cleaned_data.get("group") or ""
        if value in ("", "none", "any"):
            return value
        if parse_id(value) is None:
            raise forms.ValidationError("Choose a group, 'none' or 'any'.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        low, high = data.get("score_min"), data.get("score_max")
        if low is not None and high is not None and low > high:
            raise forms.ValidationError("The lowest score must not exceed the highest.")
        for key in ("after", "before"):
            if data.get(key):
                try:
                    _parse_cursor(data[key], data.get("sort") or "new")
                except ValueError:
                    self.add_error(key, "This page link is not valid; start from the first page.")
        return data


@dataclass(frozen=True)
class PoolPage:
    images: Sequence[Image]
    next_cursor: str | None
    prev_cursor: str | None


def _parse_cursor(raw: str, sort: str) -> tuple[float | None, int]:
    if sort.startswith("score"):
        score, _, pk = raw.partition(":")
        return float(score), int(pk)
    return None, int(raw)


def _cursor(image: Image, sort: str) -> str:
    if sort.startswith("score"):
        return f"{image.filter_score!r}:{image.pk}"
    return str(image.pk)


def filtered_images(data: dict[str, Any], user: User) -> QuerySet[Image]:
    images = Image.objects.all()
    label = data.get("label") or ""
    any_label = InterestLabel.objects.filter(image=OuterRef("pk"))
    mine = any_label.filter(annotator=user)
    if label == "unlabelled":
        images = images.filter(~Exists(any_label))
    elif label == "mine-none":
        images = images.filter(~Exists(mine))
    elif label == "mine-yes":
        images = images.filter(Exists(mine.filter(interesting=True)))
    elif label == "mine-no":
        images = images.filter(Exists(mine.filter(interesting=False)))
    elif label == "any-yes":
        images = images.filter(Exists(any_label.filter(interesting=True)))
    elif label == "any-no":
        images = images.filter(Exists(any_label.filter(interesting=False)))
    group = data.get("group") or ""
    membership = GroupMember.objects.filter(image=OuterRef("pk"))
    if group == "none":
        images = images.filter(~Exists(membership))
    elif group and group != "any":
        images = images.filter(Exists(membership.filter(group_id=int(group))))
    if data.get("batch"):
        images = images.filter(batch_id=data["batch"])
    if data.get("score_min") is not None:
        images = images.filter(filter_score__gte=data["score_min"])
    if data.get("score_max") is not None:
        images = images.filter(filter_score__lte=data["score_max"])
    return images


def _ordered(images: QuerySet[Image], sort: str, reverse: bool) -> QuerySet[Image]:
    descending = sort in ("new", "score-high")
    if reverse:
        descending = not descending
    if sort.startswith("score"):
        images = images.filter(filter_score__isnull=False)
        return images.order_by(
            *(("-filter_score", "-id") if descending else ("filter_score", "id"))
        )
    return images.order_by("-id" if descending else "id")


def _beyond(images: QuerySet[Image], sort: str, cursor: str, *, forward: bool) -> QuerySet[Image]:
    score, pk = _parse_cursor(cursor, sort)
    descending = (sort in ("new", "score-high")) == forward
    if score is None:
        return images.filter(id__lt=pk) if descending else images.filter(id__gt=pk)
    if descending:
        return images.filter(Q(filter_score__lt=score) | Q(filter_score=score, id__lt=pk))
    return images.filter(Q(filter_score__gt=score) | Q(filter_score=score, id__gt=pk))


def pool_page(data: dict[str, Any], user: User, *, size: int | None = None) -> PoolPage:
    """One page of the pool: the same few queries however deep the page is."""
    size = size or settings.RELSIM_POOL_PAGE_SIZE
    sort = data.get("sort") or "new"
    images = filtered_images(data, user)
    backwards = bool(data.get("before"))
    if data.get("after"):
        images = _beyond(images, sort, data["after"], forward=True)
    elif backwards:
        images = _beyond(images, sort, data["before"], forward=False)
    images = _ordered(images, sort, reverse=backwards).only(
        "id", "thumbnail", "source_name", "width", "height", "filter_score", "created_at"
    )
    images = images.prefetch_related(
        Prefetch(
            "interest_labels",
            queryset=InterestLabel.objects.filter(annotator=user),
            to_attr="my_labels",
        ),
        Prefetch("memberships", queryset=GroupMember.objects.only("id", "image_id", "group_id")),
    )
    rows = list(images[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    if not rows:
        return PoolPage([], None, None)
    has_next = more if not backwards else True
    has_prev = bool(data.get("after")) or (backwards and more)
    return PoolPage(
        images=rows,
        next_cursor=_cursor(rows[-1], sort) if has_next else None,
        prev_cursor=_cursor(rows[0], sort) if has_prev else None,
    )


def filter_choices() -> dict[str, Any]:
    """Options for the filter bar (bounded lists, so the page stays a few queries)."""
    return {
        "groups": list(
            Group.objects.exclude(state=Group.State.ARCHIVED)
            .order_by("-updated_at")
            .values("id", "title")[:200]
        ),
        "batches": list(
            ImportBatch.objects.order_by("-created_at").values("id", "kind", "source")[:50]
        ),
        "has_scores": Image.objects.filter(filter_score__isnull=False).exists(),
    }
