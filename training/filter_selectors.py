"""Reads for the interest filter: the labelled set a filter learns from (one majority label
per image), the active filter, its score histogram, and the threshold for a keep-rate with
the labelled set's precision and recall there."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count, F, FloatField, Q, QuerySet, Value
from django.db.models.functions import Floor, Least

from curation.models import InterestLabel
from training.model_paths import TINY_FINETUNE_RECIPE, TINY_VLM_FOLDER, is_tiny_vlm, vlm_path
from training.models import FilterScore, Job, TrainedModel

# Too few of either class and the filter learns nothing worth scoring a pool with.
MIN_LABELS_PER_CLASS = 3
HISTOGRAM_BINS = 20

# The paper's recipe is FilterTrainConfig's own defaults (LoRA on Qwen2.5-VL-7B); the demo's
# tiny VLM gets one it can learn something with on a CPU in a minute.
FILTER_TINY_RECIPE = TINY_FINETUNE_RECIPE


@dataclass(frozen=True)
class LabelledImage:
    image_id: int
    file: str  # Image.file's name, under MEDIA_ROOT
    interesting: bool


@dataclass(frozen=True)
class LabelledSet:
    """Each labelled image with the majority of its labels; ties are left out."""

    images: list[LabelledImage]
    ties: int

    @property
    def yes(self) -> int:
        return sum(image.interesting for image in self.images)

    @property
    def no(self) -> int:
        return len(self.images) - self.yes

    def too_few(self) -> str:
        """Why a filter cannot be trained on these labels, or ""."""
        if min(self.yes, self.no) >= MIN_LABELS_PER_CLASS:
            return ""
        ties = f" ({self.ties} tied image(s) left out)" if self.ties else ""
        return (
            f"too few labels: {self.yes} yes / {self.no} no{ties}; label at least "
            f"{MIN_LABELS_PER_CLASS} images of each (interesting and not) on the labelling page"
        )


def labelled_set() -> LabelledSet:
    per_image = (
        InterestLabel.objects.values("image_id", "image__file")
        .annotate(n=Count("id"), yes=Count("id", filter=Q(interesting=True)))
        .order_by("image_id")
    )
    images: list[LabelledImage] = []
    ties = 0
    for row in per_image:
        if 2 * row["yes"] == row["n"]:
            ties += 1
            continue
        images.append(LabelledImage(row["image_id"], row["image__file"], 2 * row["yes"] > row["n"]))
    return LabelledSet(images, ties)


def active_filter() -> TrainedModel | None:
    return TrainedModel.objects.filter(kind=TrainedModel.Kind.FILTER, is_active=True).first()


def filter_models() -> QuerySet[TrainedModel]:
    return (
        TrainedModel.objects.filter(kind=TrainedModel.Kind.FILTER)
        .select_related("job")
        .annotate(scored=Count("filter_scores"))
    )


def filter_jobs_recent(limit: int = 10) -> QuerySet[Job]:
    return Job.objects.filter(kind=Job.Kind.FILTER).order_by("-created_at", "-id")[:limit]


def filter_recipe() -> tuple[dict[str, Any], bool, str]:
    """(every FilterTrainConfig option with the recipe's values laid over, tiny, the VLM) the
    way filter_jobs decides them; the tiny VLM is named here without being built."""
    from ml.captioning.filter_training import FilterTrainConfig

    if settings.RELSIM_VLM_PATH.strip():
        folder = vlm_path()
        tiny = is_tiny_vlm(folder)
    else:
        folder, tiny = settings.DATA_DIR / "models" / TINY_VLM_FOLDER, True
    defaults: dict[str, Any] = {}
    for option in fields(FilterTrainConfig):
        if option.default is not MISSING:
            defaults[option.name] = option.default
        elif option.default_factory is not MISSING:
            defaults[option.name] = option.default_factory()
    if tiny:
        defaults.update(FILTER_TINY_RECIPE)
    return defaults, tiny, str(folder)


# --- Scores --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    count: int


def score_histogram(model: TrainedModel, bins: int = HISTOGRAM_BINS) -> list[Bin]:
    """How many of the model's scores fall in each of `bins` equal bins of [0, 1] (a score
    of exactly 1 counts in the last); counted by the database."""
    last = Value(bins - 1.0, output_field=FloatField())
    counts = dict(
        FilterScore.objects.filter(model=model)
        .annotate(bin=Least(Floor(F("score") * bins), last))
        .values("bin")
        .annotate(n=Count("id"))
        .values_list("bin", "n")
    )
    found = {int(key): n for key, n in counts.items() if key is not None}
    return [Bin(i / bins, (i + 1) / bins, found.get(i, 0)) for i in range(bins)]


@dataclass(frozen=True)
class KeepThreshold:
    """Keep an image when its score >= threshold; precision and recall are over the labelled
    images the model scored (None where they are undefined)."""

    keep_rate: float  # asked for
    threshold: float
    kept: int
    total: int
    labelled: int
    precision: float | None
    recall: float | None

    @property
    def kept_rate(self) -> float:
        """What the threshold actually keeps (ties at the threshold are all kept)."""
        return self.kept / self.total if self.total else 0.0


def keep_threshold(
    model: TrainedModel, keep_rate: float, labels: LabelledSet | None = None
) -> KeepThreshold | None:
    """The score at the ceil(keep_rate x N)-th place from the top of the model's N scores,
    and the labelled set's precision and recall at it; None when the model scored nothing."""
    if not 0.0 < keep_rate <= 1.0:
        raise ValueError("keep_rate must lie in (0, 1]")
    scores = FilterScore.objects.filter(model=model)
    total = scores.count()
    if not total:
        return None
    # The tolerance keeps 0.3 x 10 (3.0000000000000004 in floats) at 3.
    rank = min(total, max(1, math.ceil(keep_rate * total - 1e-9)))
    threshold = scores.order_by("-score").values_list("score", flat=True)[rank - 1]
    kept = scores.filter(score__gte=threshold).count()
    labels = labels if labels is not None else labelled_set()
    truth = {image.image_id: image.interesting for image in labels.images}
    scored = {pk: score for pk, score in _labelled_rows(scores) if pk in truth}
    positives = sum(truth[pk] for pk in scored)
    kept_ids = [pk for pk, score in scored.items() if score >= threshold]
    true_kept = sum(truth[pk] for pk in kept_ids)
    return KeepThreshold(
        keep_rate=keep_rate,
        threshold=threshold,
        kept=kept,
        total=total,
        labelled=len(scored),
        precision=true_kept / len(kept_ids) if kept_ids else None,
        recall=true_kept / positives if positives else None,
    )


def labelled_scores(model: TrainedModel, labels: LabelledSet) -> tuple[list[float], list[bool]]:
    """The model's scores of the labelled images it scored, with their labels."""
    truth = {image.image_id: image.interesting for image in labels.images}
    rows = _labelled_rows(FilterScore.objects.filter(model=model))
    pairs = sorted((pk, score) for pk, score in rows if pk in truth)
    return [score for _, score in pairs], [truth[pk] for pk, _ in pairs]


def _labelled_rows(scores: QuerySet[FilterScore]) -> list[tuple[int, float]]:
    # A subquery rather than a list of ids: a labelled set of thousands stays one query.
    labelled = InterestLabel.objects.values("image_id")
    return list(scores.filter(image_id__in=labelled).values_list("image_id", "score"))


def image_path(name: str) -> Path:
    return Path(settings.MEDIA_ROOT) / name
