"""The interest-labelling queue: each annotator gets the next image nobody else holds,
under a lease that expires, so two annotators never label the same image at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Abs
from django.utils import timezone

from curation.models import Image, InterestLabel, LabelLease

CANDIDATES_PER_TRY = 20


def _lease_until() -> datetime:
    return timezone.now() + timedelta(seconds=settings.RELSIM_LEASE_SECONDS)


def queue_candidates(annotator: User, skip: Sequence[int] = ()) -> list[int]:
    """Images this annotator has not labelled, still short of labels, and not leased by
    someone else right now; oldest first, or with RELSIM_LABEL_ORDER "uncertain" the
    images the filter is least sure of first (active learning)."""
    now = timezone.now()
    mine = InterestLabel.objects.filter(image=OuterRef("pk"), annotator=annotator)
    held = LabelLease.objects.filter(image=OuterRef("pk"), expires_at__gt=now).exclude(
        annotator=annotator
    )
    images = _short_of_labels().filter(~Exists(mine), ~Exists(held)).exclude(pk__in=skip)
    return list(_queue_order(images).values_list("id", flat=True)[:CANDIDATES_PER_TRY])


def _queue_order(images: QuerySet[Image]) -> QuerySet[Image]:
    if settings.RELSIM_LABEL_ORDER != "uncertain":
        return images.order_by("id")
    # Image.filter_score holds the active filter's scores (none without one): scored images
    # nearest 0.5 first, then the unscored ones oldest first.
    doubt = Abs(F("filter_score") - 0.5)
    return images.order_by(doubt.asc(nulls_last=True), "id")


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
    # The database counts; Python sees a few rows whatever the number of labels: a histogram
    # of (yes, no) per image, answer counts per pair, and the first `limit` disagreements.
    histogram, pairs = _label_counts()
    several = sum(histogram.values())
    mixed = sum(images for (yes, no), images in histogram.items() if yes and no)
    per_image = (
        InterestLabel.objects.values("image_id")
        .annotate(n=Count("id"), yes=Count("id", filter=Q(interesting=True)))
        .filter(n__gte=2, yes__gt=0, yes__lt=F("n"))
    )
    mixed_ids = list(per_image.order_by("image_id").values_list("image_id", flat=True)[:limit])
    yes: dict[int, list[str]] = {pk: [] for pk in mixed_ids}
    no: dict[int, list[str]] = {pk: [] for pk in mixed_ids}
    given = InterestLabel.objects.filter(image_id__in=mixed_ids).values_list(
        "image_id", f"annotator__{get_user_model().USERNAME_FIELD}", "interesting"
    )
    for image_id, username, interesting in given:
        (yes if interesting else no)[image_id].append(username)
    rows = [
        Disagreement(image=image, yes=sorted(yes[image.pk]), no=sorted(no[image.pk]))
        for image in Image.objects.filter(pk__in=mixed_ids).only("thumbnail").order_by("id")
    ]
    return Agreement(
        several,
        several - mixed,
        rows,
        fleiss_kappa=fleiss_kappa_from_histogram(histogram),
        pairs=pairs,
    )


def _names() -> dict[str, str]:
    """Quoted table and column names for the raw SQL below."""
    quote = connection.ops.quote_name
    user_model = get_user_model()
    users = user_model._meta
    return {
        "labels": quote(InterestLabel._meta.db_table),
        "image": quote("image_id"),
        "annotator": quote("annotator_id"),
        "interesting": quote("interesting"),
        "users": quote(users.db_table),
        "user_pk": quote(str(users.pk.column) if users.pk else "id"),
        "username": quote(user_model.USERNAME_FIELD),
    }


def _label_counts() -> tuple[dict[tuple[int, ...], int], list[PairKappa]]:
    """One pass over the labels for both kappas: a histogram {(yes, no): images} over the
    images with two or more labels, and Cohen's kappa for each pair of annotators over the
    images both of them labelled."""
    # A self-join on the image pairs every two labels of an image once (lower annotator id
    # first), so it sees only the images with two or more labels. Counted per pair of
    # annotators and answers, it gives Cohen's tables. Counted per image, it gives (yes, n):
    # each of an image's n labels is in n - 1 of its pairs, and n - 1 is the number of
    # distinct first annotators, so yes = (yes answers in its pairs) / (n - 1).
    sql = """
        WITH pairs AS (
            SELECT a.{image} AS image_id, a.{annotator} AS first_id, b.{annotator} AS second_id,
                   CASE WHEN a.{interesting} THEN 1 ELSE 0 END AS first_yes,
                   CASE WHEN b.{interesting} THEN 1 ELSE 0 END AS second_yes
            FROM {labels} a
            JOIN {labels} b ON b.{image} = a.{image} AND b.{annotator} > a.{annotator}
        ),
        per_image AS (
            SELECT COUNT(DISTINCT first_id) AS others, SUM(first_yes + second_yes) AS yes_in_pairs
            FROM pairs GROUP BY image_id
        )
        SELECT NULL, NULL, yes_in_pairs / others, others + 1, COUNT(*)
        FROM per_image GROUP BY yes_in_pairs, others
        UNION ALL
        SELECT first_user.{username}, second_user.{username}, first_yes, second_yes, images
        FROM (
            SELECT first_id, second_id, first_yes, second_yes, COUNT(*) AS images
            FROM pairs GROUP BY first_id, second_id, first_yes, second_yes
        ) answers
        JOIN {users} first_user ON first_user.{user_pk} = answers.first_id
        JOIN {users} second_user ON second_user.{user_pk} = answers.second_id
    """.format(**_names())
    histogram: dict[tuple[int, ...], int] = {}
    tables: dict[tuple[str, str], dict[tuple[bool, bool], int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql)
        for first, second, first_value, second_value, count in cursor.fetchall():
            if first is None:  # (yes, n) of some images, and how many
                yes, n = int(first_value), int(second_value)
                histogram[yes, n - yes] = histogram.get((yes, n - yes), 0) + int(count)
                continue
            answers = (bool(first_value), bool(second_value))
            # Pairs are named in username order (Python's, not the database collation's).
            if second < first:
                first, second, answers = second, first, answers[::-1]
            table = tables.setdefault((first, second), {})
            table[answers] = table.get(answers, 0) + int(count)
    pairs = [
        PairKappa(first, second, sum(table.values()), cohen_kappa_from_counts(table))
        for (first, second), table in sorted(tables.items())
    ]
    return histogram, pairs


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


def cohen_kappa_from_counts(table: Mapping[tuple[bool, bool], int]) -> float | None:
    """`cohen_kappa` from how many items got each (first answer, second answer)."""
    n = sum(table.values())
    if not n:
        return None
    observed = (table.get((True, True), 0) + table.get((False, False), 0)) / n
    first_yes = (table.get((True, True), 0) + table.get((True, False), 0)) / n
    second_yes = (table.get((True, True), 0) + table.get((False, True), 0)) / n
    expected = first_yes * second_yes + (1 - first_yes) * (1 - second_yes)
    if expected == 1:
        return None
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


def fleiss_kappa_from_histogram(histogram: Mapping[tuple[int, ...], int]) -> float | None:
    """`fleiss_kappa` from how many items share each row of per-category counts."""
    items = {row: count for row, count in histogram.items() if sum(row) >= 2 and count}
    if not items:
        return None
    n_items = sum(items.values())
    observed = (
        sum(
            count * sum(c * (c - 1) for c in row) / (sum(row) * (sum(row) - 1))
            for row, count in items.items()
        )
        / n_items
    )
    ratings = sum(count * sum(row) for row, count in items.items())
    width = len(next(iter(items)))
    shares = [sum(count * row[j] for row, count in items.items()) / ratings for j in range(width)]
    expected = sum(share * share for share in shares)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)
