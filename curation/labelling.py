"""The interest-labelling queue: each annotator gets the next image nobody else holds,
under a lease that expires, so two annotators never label the same image at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import combinations
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from curation.models import Image, InterestLabel, LabelLease

CANDIDATES_PER_TRY = 20


def _lease_until() -> datetime:
    return timezone.now() + timedelta(seconds=settings.RELSIM_LEASE_SECONDS)


def queue_candidates(annotator: User, skip: Sequence[int] = ()) -> list[int]:
    """Images this annotator has not labelled, still short of labels, and not leased by
    someone else right now; oldest first."""
    now = timezone.now()
    mine = InterestLabel.objects.filter(image=OuterRef("pk"), annotator=annotator)
    held = LabelLease.objects.filter(image=OuterRef("pk"), expires_at__gt=now).exclude(
        annotator=annotator
    )
    images = _short_of_labels().filter(~Exists(mine), ~Exists(held)).exclude(pk__in=skip)
    return list(images.order_by("id").values_list("id", flat=True)[:CANDIDATES_PER_TRY])


def _short_of_labels() -> QuerySet[Image]:
    wanted = settings.RELSIM_LABELS_PER_IMAGE
    if wanted == 1:
        # The common case as an anti-join, which stays fast on a large pool.
        return Image.objects.filter(~Exists(InterestLabel.objects.filter(image=OuterRef("pk"))))
    return Image.objects.annotate(label_count=Count("interest_labels")).filter(
        label_count__lt=wanted
    )


def lease_next_image(*, annotator: User, skip: Sequence[int] = ()) -> Image | None:
    """The annotator's current leased image, or a newly leased one; None when done."""
    now = timezone.now()
    current = (
        LabelLease.objects.filter(annotator=annotator, expires_at__gt=now)
        .exclude(image__interest_labels__annotator=annotator)
        .select_related("image")
        .first()
    )
    if current is not None:
        LabelLease.objects.filter(pk=current.pk).update(expires_at=_lease_until())
        return current.image
    for image_id in queue_candidates(annotator, skip):
        if _take_lease(annotator, image_id):
            return Image.objects.get(pk=image_id)
    return None


def _take_lease(annotator: User, image_id: int) -> bool:
    # A stale lease (expired, or this annotator's own) is taken over atomically.
    taken = LabelLease.objects.filter(
        Q(expires_at__lte=timezone.now()) | Q(annotator=annotator), image_id=image_id
    ).update(annotator=annotator, expires_at=_lease_until())
    if not taken:
        try:
            with transaction.atomic():
                LabelLease.objects.create(
                    image_id=image_id, annotator=annotator, expires_at=_lease_until()
                )
        except IntegrityError:
            return False  # Another annotator holds it.
    # The candidate list may be older than a label someone gave and whose lease they then
    # released; a label is written before its lease goes, so checking now, with the lease
    # held, sees it.
    still_wanted = (
        _short_of_labels()
        .filter(pk=image_id)
        .exclude(interest_labels__annotator=annotator)
        .exists()
    )
    if not still_wanted:
        LabelLease.objects.filter(image_id=image_id, annotator=annotator).delete()
    return still_wanted


def lease_image(*, annotator: User, image: Image) -> bool:
    """Put a given image in front for this annotator (after an undo); False if held.

    The annotator's other leases are given back: `lease_next_image` resumes the one lease an
    annotator holds, so an older lease (the image shown when undo was pressed) would win."""
    with transaction.atomic():
        if not _take_lease(annotator, image.pk):
            return False
        LabelLease.objects.filter(annotator=annotator).exclude(image_id=image.pk).delete()
    return True


def release_lease(*, annotator: User, image: Image) -> None:
    LabelLease.objects.filter(annotator=annotator, image=image).delete()


@dataclass(frozen=True)
class QueueCounts:
    labelled_by_me: int
    labelled_today: int
    # Images still short of labels that this annotator has not labelled: a label by me takes
    # one off, an undo puts it back; labels by others only ever take images off.
    remaining: int

    @property
    def total(self) -> int:
        """What this annotator has labelled or still could: the two counts add up to it."""
        return self.labelled_by_me + self.remaining


def queue_counts(annotator: User) -> QueueCounts:
    mine = InterestLabel.objects.filter(annotator=annotator)
    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    remaining = (
        _short_of_labels()
        .filter(~Exists(InterestLabel.objects.filter(image=OuterRef("pk"), annotator=annotator)))
        .count()
    )
    return QueueCounts(
        labelled_by_me=mine.count(),
        labelled_today=mine.filter(updated_at__gte=start).count(),
        remaining=remaining,
    )


@dataclass(frozen=True)
class Disagreement:
    image: Image
    yes: list[str]
    no: list[str]


@dataclass(frozen=True)
class PairKappa:
    first: str
    second: str
    images: int
    kappa: float | None


@dataclass(frozen=True)
class Agreement:
    images_with_several_labels: int
    agreeing: int
    disagreements: list[Disagreement]
    # Chance-corrected: Fleiss' kappa over every image with 2+ labels, and Cohen's kappa per
    # pair of annotators over the images both labelled. None where chance explains everything.
    fleiss_kappa: float | None = None
    pairs: list[PairKappa] = field(default_factory=list)

    @property
    def disagreeing(self) -> int:
        return self.images_with_several_labels - self.agreeing

    @property
    def rate(self) -> float | None:
        if not self.images_with_several_labels:
            return None
        return self.agreeing / self.images_with_several_labels


def agreement(*, limit: int = 200) -> Agreement:
    """How often annotators who labelled the same image agree, and where they did not."""
    # Grouping the labels (not the images) keeps this proportional to the labels given.
    per_image = (
        InterestLabel.objects.values("image_id")
        .annotate(
            n=Count("id"),
            yes=Count("id", filter=Q(interesting=True)),
        )
        .filter(n__gte=2)
    )
    several = mixed = 0
    mixed_ids: list[int] = []
    counts: list[tuple[int, int]] = []
    for row in per_image.order_by("image_id"):
        several += 1
        counts.append((row["yes"], row["n"] - row["yes"]))
        if 0 < row["yes"] < row["n"]:
            mixed += 1
            if len(mixed_ids) < limit:
                mixed_ids.append(row["image_id"])
    rows = []
    images = Image.objects.filter(pk__in=mixed_ids).prefetch_related("interest_labels__annotator")
    for image in images.order_by("id"):
        labels = list(image.interest_labels.all())
        rows.append(
            Disagreement(
                image=image,
                yes=sorted(label.annotator.get_username() for label in labels if label.interesting),
                no=sorted(
                    label.annotator.get_username() for label in labels if not label.interesting
                ),
            )
        )
    return Agreement(
        several,
        several - mixed,
        rows,
        fleiss_kappa=fleiss_kappa(counts),
        pairs=_pair_kappas(per_image.values("image_id")),
    )


def _pair_kappas(shared_images: QuerySet[Any, Any]) -> list[PairKappa]:
    """Cohen's kappa for each pair of annotators, over the images both of them labelled."""
    answers: dict[int, dict[str, bool]] = {}
    labels = (
        InterestLabel.objects.filter(image_id__in=shared_images)
        .values_list("image_id", "annotator__username", "interesting")
        .order_by("image_id")
    )
    for image_id, username, interesting in labels:
        answers.setdefault(image_id, {})[username] = interesting
    by_pair: dict[tuple[str, str], list[tuple[bool, bool]]] = {}
    for per_annotator in answers.values():
        for first, second in combinations(sorted(per_annotator), 2):
            pair = (per_annotator[first], per_annotator[second])
            by_pair.setdefault((first, second), []).append(pair)
    return [
        PairKappa(first, second, len(pairs), cohen_kappa(pairs))
        for (first, second), pairs in sorted(by_pair.items())
    ]


def cohen_kappa(pairs: Sequence[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa of two raters' yes/no answers on the same items."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first_yes = sum(a for a, _ in pairs) / n
    second_yes = sum(b for _, b in pairs) / n
    expected = first_yes * second_yes + (1 - first_yes) * (1 - second_yes)
    if expected == 1:
        return None  # Both said the same one thing throughout: kappa is undefined.
    return (observed - expected) / (1 - expected)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from per-item counts of raters in each category.

    Items may have different numbers of raters (at least two each): each item's agreement is
    the share of agreeing rater pairs, and chance comes from all ratings pooled."""
    items = [row for row in counts if sum(row) >= 2]
    if not items:
        return None
    observed = sum(
        sum(c * (c - 1) for c in row) / (sum(row) * (sum(row) - 1)) for row in items
    ) / len(items)
    ratings = sum(sum(row) for row in items)
    shares = [sum(row[j] for row in items) / ratings for j in range(len(items[0]))]
    expected = sum(share * share for share in shares)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)
