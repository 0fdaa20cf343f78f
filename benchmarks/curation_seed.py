"""Seed a large, realistic curation pool fast (bulk inserts, no image files) for the page
benchmark: images with hash bands, interest labels, groups, captions, review drafts, and a
page of finished import jobs with full-size reports."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.color import no_style
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from captions.models import Caption, CaptionRevision
from core.reports import ImportReport
from core.roles import ADMIN, ANNOTATOR, REVIEWER, assign_role
from curation.models import (
    Group,
    GroupMember,
    GroupNegative,
    Image,
    ImageHashBand,
    ImportBatch,
    InterestLabel,
    Split,
)
from curation.near_duplicates import band_rows
from training.models import Job

BATCH = 5_000
ANNOTATORS = 4
# The labelling queue hands out the oldest images first, so labels pile up at the old end;
# labelling from the pool adds a few scattered ones.
QUEUE_LABELLED = 0.25
SCATTERED_LABELLED = 0.05
DOUBLE_LABELLED = 0.10
SCORED = 0.10
APPROVED_GROUPS = 0.8
SHOWCASE_MEMBERS = 6
# A page of recent imports (the import page lists 20), each report the size of a real run's:
# the same at every pool size, so the job pages' figures compare across sizes.
IMPORT_JOBS = 20
REPORT_ACCEPTED = 2_000
REPORT_DUPLICATES = 200
REPORT_REJECTED = 100
REPORT_NORMALISED = 50
_REJECT_REASONS = [
    "not an image: the bytes match no supported format",
    "the image is 12000x9000 pixels; at most 80,000,000 pixels are accepted",
    "could not be read: truncated file",
    "the file is 61 MB; at most 50 MB is accepted",
]
_NORMALISE_NOTES = [
    ["EXIF orientation applied"],
    ["RGBA converted to RGB"],
    ["animated: first frame kept", "palette converted"],
    ["16-bit reduced to 8-bit", "grayscale converted to RGB"],
]

_CAPTIONS = [
    "A {Object} placed inside a larger {Object} of the same kind.",
    "{Animal} imitating the pose of a {Person}.",
    "A {Word} written with {Object}s that mean the same {Meaning}.",
    "{Food} arranged to look like a {Place}.",
    "A {Shape} cast as a shadow by an unrelated {Object}.",
    "Several {Object}s sorted from smallest to largest.",
]

Progress = Callable[[str], None]


@dataclass
class SeedResult:
    images: int
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    annotator_ids: list[int] = field(default_factory=list)
    reviewer_id: int = 0
    admin_id: int = 0
    # Targets the benchmark opens: same shape at every pool size.
    showcase_group_id: int = 0
    showcase_image_id: int = 0
    oldest_draft_id: int = 0
    import_job_id: int = 0


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _chunks(count: int, size: int = BATCH) -> Iterator[range]:
    for start in range(0, count, size):
        yield range(start, min(start + size, count))


def _insert(model: type[Model], rows: list[Any], result: SeedResult) -> None:
    model.objects.bulk_create(rows, batch_size=BATCH)  # type: ignore[attr-defined]
    result.rows[model.__name__] = result.rows.get(model.__name__, 0) + len(rows)


def _users(result: SeedResult) -> None:
    user_model = get_user_model()
    for n in range(ANNOTATORS):
        user = user_model.objects.create(username=f"bench-annotator-{n}")
        user.set_unusable_password()
        user.save()
        assign_role(user, ANNOTATOR)
        result.annotator_ids.append(user.pk)
    reviewer = user_model.objects.create(username="bench-reviewer")
    reviewer.set_unusable_password()
    reviewer.save()
    assign_role(reviewer, REVIEWER)
    result.reviewer_id = reviewer.pk
    admin = user_model.objects.create(username="bench-admin")
    admin.set_unusable_password()
    admin.save()
    assign_role(admin, ADMIN)
    result.admin_id = admin.pk


def _images(n: int, rng: random.Random, result: SeedResult) -> None:
    batches = [
        ImportBatch.objects.create(kind=ImportBatch.Kind.IMAGES, source=f"/imports/bench-{b}")
        for b in range(5)
    ]
    showcase_phash = _hex(rng, 64)
    for chunk in _chunks(n):
        images = []
        for index in chunk:
            pk = index + 1
            sha = _hex(rng, 256)
            phash = _hex(rng, 64)
            if pk == 1:
                phash = showcase_phash
            elif pk == 2:
                # A near duplicate of the showcase image (3 bits apart).
                phash = f"{int(showcase_phash, 16) ^ 0b1011:016x}"
            images.append(
                Image(
                    id=pk,
                    sha256=sha,
                    md5=_hex(rng, 128),
                    width=rng.choice((640, 800, 1024, 1280)),
                    height=rng.choice((480, 600, 768, 960)),
                    original_format=rng.choice(("JPEG", "PNG", "WEBP")),
                    file=f"images/{sha[:2]}/{sha}.png",
                    thumbnail=f"thumbs/{sha[:2]}/{sha}.png",
                    phash=phash,
                    filter_score=round(rng.random(), 4) if rng.random() < SCORED else None,
                    source_name=f"bench/{pk:07d}.jpg",
                    batch=batches[index * len(batches) // n],
                    created_by_id=result.annotator_ids[0],
                )
            )
        _insert(Image, images, result)
        _insert(ImageHashBand, band_rows(images), result)
    result.showcase_image_id = 1


def _labels(n: int, rng: random.Random, result: SeedResult) -> None:
    annotators = result.annotator_ids
    queue_end = int(n * QUEUE_LABELLED)
    rows = []
    for index in range(n):
        pk = index + 1
        if pk > queue_end and rng.random() >= SCATTERED_LABELLED:
            continue
        first = rng.randrange(len(annotators))
        rows.append(
            InterestLabel(
                image_id=pk, annotator_id=annotators[first], interesting=rng.random() < 0.4
            )
        )
        if pk == result.showcase_image_id or rng.random() < DOUBLE_LABELLED:
            second = (first + 1 + rng.randrange(len(annotators) - 1)) % len(annotators)
            rows.append(
                InterestLabel(
                    image_id=pk, annotator_id=annotators[second], interesting=rng.random() < 0.4
                )
            )
        if len(rows) >= BATCH:
            _insert(InterestLabel, rows, result)
            rows = []
    _insert(InterestLabel, rows, result)


def _groups_and_captions(n: int, rng: random.Random, result: SeedResult) -> None:
    """~n/50 groups of 2..6 images, most with an approved caption; ~n/200 drafts to review."""
    annotators, reviewer = result.annotator_ids, result.reviewer_id
    n_groups = max(2, n // 50)
    n_drafts = max(2, n // 200)
    now = timezone.now()
    groups, members, negatives = [], [], []
    for g in range(n_groups):
        pk = g + 1
        approved = g < 2 or rng.random() < APPROVED_GROUPS
        groups.append(
            Group(
                id=pk,
                title=f"Bench group {pk}",
                split=Split.TEST if rng.random() < 0.1 else Split.TRAIN,
                state=Group.State.READY if approved else Group.State.DRAFT,
                created_by_id=annotators[g % len(annotators)],
            )
        )
        size = SHOWCASE_MEMBERS if g == 0 else rng.randint(2, 6)
        chosen = rng.sample(range(1, n + 1), size + 2)
        if g < 2:
            # The showcase image sits in groups 1 and 2, so group 1 warns about group 2.
            chosen = [result.showcase_image_id] + [i for i in chosen if i != 1]
        for position, image_id in enumerate(chosen[:size]):
            members.append(GroupMember(group_id=pk, image_id=image_id, position=position))
        if g == 0 or rng.random() < 0.1:
            for image_id in chosen[size : size + 2]:
                negatives.append(GroupNegative(group_id=pk, image_id=image_id))
    _insert(Group, groups, result)
    _insert(GroupMember, members, result)
    _insert(GroupNegative, negatives, result)

    captions, revisions = [], []
    caption_pk = 0

    def add(caption: Caption, history: list[tuple[str, str]]) -> None:
        captions.append(caption)
        for version, (action, status) in enumerate(history, start=1):
            revisions.append(
                CaptionRevision(
                    caption_id=caption.pk,
                    actor_id=caption.author_id if action != "approve" else reviewer,
                    action=action,
                    text_before="" if version == 1 else caption.text,
                    text_after=caption.text,
                    status_after=status,
                    version=version,
                )
            )

    unapproved = [group.pk for group in groups if group.state == Group.State.DRAFT]
    for group in groups:
        if group.state != Group.State.READY:
            continue
        caption_pk += 1
        add(
            Caption(
                id=caption_pk,
                group_id=group.pk,
                text=rng.choice(_CAPTIONS),
                status=Caption.Status.APPROVED,
                source=Caption.Source.MODEL,
                model_name="Qwen2.5-VL-7B-Instruct",
                prompt_version="v1",
                version=2,
                author_id=group.created_by_id,
                reviewer_id=reviewer,
                reviewed_at=now,
            ),
            [("create", "draft"), ("approve", "approved")],
        )
    for d in range(n_drafts):
        caption_pk += 1
        by_model = rng.random() < 0.7
        common: dict[str, Any] = {
            "id": caption_pk,
            "text": rng.choice(_CAPTIONS),
            "status": Caption.Status.DRAFT,
            "source": Caption.Source.MODEL if by_model else Caption.Source.HUMAN,
            "model_name": "Qwen2.5-VL-7B-Instruct" if by_model else "",
            "prompt_version": "v1" if by_model else "",
            "author_id": None if by_model else annotators[d % len(annotators)],
        }
        if d < len(unapproved) and d < n_drafts * 4 // 5:
            caption = Caption(group_id=unapproved[d], **common)
        else:
            caption = Caption(image_id=rng.randrange(1, n + 1), split=Split.TRAIN, **common)
        add(caption, [("create", "draft")])
        if d == 0:
            result.oldest_draft_id = caption_pk
    _insert(Caption, captions, result)
    _insert(CaptionRevision, revisions, result)
    result.showcase_group_id = 1


def _import_report(n: int, rng: random.Random, job: int, batch_id: int) -> dict[str, Any]:
    """A report as an image import writes it (core.reports.ImportReport)."""
    report = ImportReport(accepted=REPORT_ACCEPTED, batch_id=batch_id)
    for k in range(REPORT_DUPLICATES):
        report.duplicate(f"upload-{job}/dup/IMG_{k:05d}.jpg", rng.randrange(1, n + 1))
    for k in range(REPORT_REJECTED):
        report.reject(f"upload-{job}/bad/file_{k:05d}.jpg", rng.choice(_REJECT_REASONS))
    report.normalised = [
        {"name": f"upload-{job}/IMG_{k:05d}.png", "notes": rng.choice(_NORMALISE_NOTES)}
        for k in range(REPORT_NORMALISED)
    ]
    return report.as_dict()


def _import_jobs(n: int, rng: random.Random, result: SeedResult) -> None:
    batches = list(ImportBatch.objects.order_by("id").values_list("id", flat=True))
    now = timezone.now()
    jobs = [
        Job(
            kind=Job.Kind.IMPORT_IMAGES,
            params={"path": f"/imports/upload-{job}"},
            status=Job.Status.SUCCEEDED,
            progress=1.0,
            progress_message="done",
            artifacts={"report": _import_report(n, rng, job, batches[job % len(batches)])},
            attempts=1,
            created_by_id=result.admin_id,
            started_at=now,
            finished_at=now,
            heartbeat_at=now,
        )
        for job in range(IMPORT_JOBS)
    ]
    _insert(Job, jobs, result)
    result.import_job_id = jobs[-1].pk  # the newest: first on the import page


def _reset_sequences() -> None:
    """Rows were inserted with explicit ids; later inserts must not collide with them."""
    models = [Image, ImportBatch, Group, GroupMember, GroupNegative, Caption, CaptionRevision]
    with connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), models):
            cursor.execute(statement)


def analyse() -> None:
    """Fresh planner statistics (and, on PostgreSQL, a visibility map for index-only scans),
    as a long-lived database would have."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE")
        else:
            cursor.execute("ANALYZE")


def seed_pool(n: int, *, seed: int = 0, progress: Progress = lambda _: None) -> SeedResult:
    """Fill an empty, migrated database with n images and everything around them."""
    if Image.objects.exists():
        raise RuntimeError("seed_pool needs an empty pool")
    rng = random.Random(seed)
    result = SeedResult(images=n)
    started = time.perf_counter()
    steps: list[tuple[str, Callable[[], None]]] = [
        ("users", lambda: _users(result)),
        ("images and hash bands", lambda: _images(n, rng, result)),
        ("interest labels", lambda: _labels(n, rng, result)),
        ("groups and captions", lambda: _groups_and_captions(n, rng, result)),
        ("import jobs", lambda: _import_jobs(n, rng, result)),
        ("sequences", _reset_sequences),
    ]
    with transaction.atomic():
        for name, step in steps:
            step_started = time.perf_counter()
            step()
            progress(f"  seeded {name} in {time.perf_counter() - step_started:.1f} s")
    step_started = time.perf_counter()
    analyse()
    progress(f"  analysed in {time.perf_counter() - step_started:.1f} s")
    result.seconds = time.perf_counter() - started
    return result
