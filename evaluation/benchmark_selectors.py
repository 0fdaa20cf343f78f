"""Reads for benchmark runs: the methods a run can compare, the images that make up its
database (test images and distractors) and its ground truth, and what its pages show."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from captions.models import Caption
from core.splits import Split
from curation.models import Group, GroupMember, Image
from evaluation.models import BenchmarkQuery, BenchmarkRun, JudgeRun, Retrieval
from training.models import EmbeddingIndex

PHASH = "phash"
PHASH_LABEL = "perceptual hash (looks, not logic)"

# The paper's protocol (REFERENCE.md): 14,881 test images, as many distractors, 1,000
# queries, top-10.
PAPER_TEST = 14_881
PAPER_DISTRACTORS = 14_881
PAPER_QUERIES = 1_000
DEFAULT_K = 10
MAX_K = 100

TEST_HELP = (
    "Test images are the members of groups in the test split (archived groups left out) and "
    "the images with an approved caption of their own in the test split; distractors are "
    "pool images that are in no group and have no caption."
)


@dataclass(frozen=True)
class Method:
    """A method a benchmark can compare: its key (stored in runs), a short label for tables,
    its index and a longer description for forms."""

    key: str
    label: str
    index_id: int | None
    kind: str  # "phash", "baseline" or a TrainedModel kind ("relsim", "tuned_baseline")
    detail: str = ""

    def as_stored(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index_id, "kind": self.kind}

    @property
    def choice_label(self) -> str:
        return f"{self.label} ({self.detail})" if self.detail else self.label


def _baseline_key(name: str) -> str:
    # A baseline's name is its key unless it would read as another method's.
    clash = name == PHASH or ":" in name
    return f"baseline:{name}" if clash else name


def available_methods() -> list[Method]:
    """The newest index of each model (key "<kind>:<model id>") and of each baseline (key:
    its name), then phash: relsim models first, the weight-free hash last."""
    newest: dict[str, EmbeddingIndex] = {}
    for record in EmbeddingIndex.objects.select_related("model").order_by("-created_at", "-id"):
        if record.model is not None:
            key = f"{record.model.kind}:{record.model_id}"
        else:
            key = _baseline_key(record.baseline)
        newest.setdefault(key, record)
    methods = []
    for key, record in newest.items():
        where = f"index #{record.pk}, {record.count} images, {record.created_at:%Y-%m-%d}"
        if record.model is not None:
            label = f"{record.model.name} #{record.model_id}"
            detail = f"{record.model.get_kind_display()} · {where}"
            methods.append(Method(key, label, record.pk, record.model.kind, detail))
        else:
            methods.append(
                Method(key, record.baseline, record.pk, "baseline", f"baseline · {where}")
            )
    order = {"relsim": 0, "baseline": 2}
    methods.sort(key=lambda m: (order.get(m.kind, 1), m.label.lower()))
    methods.append(Method(PHASH, PHASH_LABEL, None, PHASH, "weight-free, every pool image"))
    return methods


def _test_captions() -> QuerySet[Caption]:
    """Approved single-image captions of the test split: the released test set's form."""
    return Caption.objects.filter(
        image__isnull=False, split=Split.TEST, status=Caption.Status.APPROVED
    )


def test_image_ids() -> list[int]:
    """Ids (ascending) of the test images: members of test-split groups that are not
    archived, and images with an approved caption of their own in the test split."""
    grouped = (
        GroupMember.objects.filter(group__split=Split.TEST)
        .exclude(group__state=Group.State.ARCHIVED)
        .values_list("image_id", flat=True)
        .distinct()
    )
    captioned = _test_captions().values_list("image_id", flat=True)
    return sorted(set(grouped) | {pk for pk in captioned if pk is not None})


def distractor_ids() -> list[int]:
    """Ids (ascending) of pool images in no group and with no caption of any status."""
    ids = Image.objects.filter(memberships__isnull=True, captions__isnull=True).values_list(
        "id", flat=True
    )
    return sorted(set(ids))


def group_mates(image_ids: list[int]) -> dict[int, set[int]]:
    """For each image, the others that share its logic as far as the data says: the other
    members of its test-split groups, and the test images whose own approved caption has
    the same text (a relation's images in the synthetic set, or a group's released as
    single captions)."""
    # Every test membership at once: a long `IN (...)` list would pass SQLite's limit.
    rows = (
        GroupMember.objects.filter(group__split=Split.TEST)
        .exclude(group__state=Group.State.ARCHIVED)
        .values_list("group_id", "image_id")
    )
    members: dict[object, set[int]] = defaultdict(set)
    for group_id, image_id in rows:
        members[("group", group_id)].add(image_id)
    for image_id, text in _test_captions().values_list("image_id", "text"):
        if image_id is not None:
            members[("caption", " ".join(text.split()).lower())].add(image_id)
    wanted = set(image_ids)
    mates: dict[int, set[int]] = {pk: set() for pk in image_ids}
    for group in members.values():
        for pk in group & wanted:
            mates[pk] |= group - {pk}
    return mates


# --- pages ---------------------------------------------------------------------------------


def benchmark_runs() -> QuerySet[BenchmarkRun]:
    return BenchmarkRun.objects.select_related("job", "created_by")


def judge_runs() -> QuerySet[JudgeRun]:
    return JudgeRun.objects.select_related("job", "benchmark", "created_by")


def complete_benchmarks() -> QuerySet[BenchmarkRun]:
    return BenchmarkRun.objects.filter(finished_at__isnull=False)


@dataclass
class SampleRow:
    """One query of the page's sample: its image and each method's first hits."""

    position: int
    image: Image
    hits: dict[str, list[tuple[Image | None, float]]] = field(default_factory=dict)


def sample_queries(run: BenchmarkRun, *, count: int = 8, shown: int = 5) -> list[SampleRow]:
    """The first `count` queries by position with each method's best `shown` hits."""
    queries = list(
        BenchmarkQuery.objects.filter(run=run).select_related("image").order_by("position")[:count]
    )
    retrievals = Retrieval.objects.filter(query__in=queries).only(
        "query_id", "method", "hits", "scores"
    )
    by_query: dict[int, list[Retrieval]] = defaultdict(list)
    wanted: set[int] = set()
    for retrieval in retrievals:
        by_query[retrieval.query_id].append(retrieval)
        wanted.update(int(pk) for pk in retrieval.hits[:shown])
    images = Image.objects.only("id", "thumbnail").in_bulk(wanted)
    rows = []
    for query in queries:
        row = SampleRow(query.position, query.image)
        for retrieval in by_query[query.pk]:
            row.hits[retrieval.method] = [
                (images.get(int(pk)), float(score))
                for pk, score in zip(retrieval.hits[:shown], retrieval.scores[:shown], strict=False)
            ]
        rows.append(row)
    return rows
