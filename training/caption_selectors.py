"""Reads for the anonymous captioner: what it learns from (approved captions), what a drafting
pass covers (groups or images with no caption a person wrote or is reviewing), the captioner
models, and each model's quality as our own reviewers judged its drafts (with the drafts an
audit of their batch decided counted apart)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery

from captions.export import MIN_GROUP_SIZE
from captions.models import Caption, CaptionRevision
from captions.text import word_edit_distance
from core.splits import Split
from curation.models import Group, Image
from training.model_paths import TINY_FINETUNE_RECIPE, TINY_VLM_FOLDER, is_tiny_vlm, vlm_path
from training.models import Job, TrainedModel

# Fewer distinct captions and the captioner only learns to repeat them.
MIN_APPROVED_CAPTIONS = 3
TARGETS = ("groups", "images")
DEFAULT_THRESHOLD = 0.5

# The paper's recipe is CaptionerTrainConfig's own defaults (LoRA r 16 on q_proj and v_proj,
# lr 2e-4, warmup 50, batch 32, 448 px); the demo's tiny VLM gets one it can learn with on a
# CPU in a minute.
CAPTIONER_TINY_RECIPE = TINY_FINETUNE_RECIPE
# The tiny model writes noise: long drafts of it only cost time.
TINY_MAX_NEW_TOKENS = 24


def model_label(model: TrainedModel) -> str:
    """What a draft's Caption.model_name holds: the captioner's id, which quality groups by."""
    return f"captioner#{model.pk}"


def approved_train_captions() -> int:
    """Approved captions a captioner would learn from now: train-split groups of at least
    MIN_GROUP_SIZE images, and single train images (as captions.export writes them)."""
    groups = (
        Group.objects.filter(
            Exists(Caption.objects.filter(group=OuterRef("pk"), status=Caption.Status.APPROVED)),
            split=Split.TRAIN,
        )
        .annotate(size=Count("members"))
        .filter(size__gte=MIN_GROUP_SIZE)
        .count()
    )
    singles = Caption.objects.filter(
        image__isnull=False, status=Caption.Status.APPROVED, split=Split.TRAIN
    ).count()
    return groups + singles


def too_few_captions(count: int) -> str:
    """Why a captioner cannot be trained on `count` approved captions, or ""."""
    if count >= MIN_APPROVED_CAPTIONS:
        return ""
    return (
        f"too few approved captions: {count} in the train split; the captioner needs at least "
        f"{MIN_APPROVED_CAPTIONS} (approve captions of train-split groups or images in review)"
    )


def active_captioner() -> TrainedModel | None:
    return TrainedModel.objects.filter(kind=TrainedModel.Kind.CAPTIONER, is_active=True).first()


def captioner_models() -> QuerySet[TrainedModel]:
    return TrainedModel.objects.filter(kind=TrainedModel.Kind.CAPTIONER).select_related("job")


def captioner_jobs_recent(limit: int = 10) -> QuerySet[Job]:
    kinds = [Job.Kind.TRAIN_CAPTIONER, Job.Kind.CAPTION]
    return Job.objects.filter(kind__in=kinds).order_by("-created_at", "-id")[:limit]


def captioner_recipe() -> tuple[dict[str, Any], bool, str]:
    """(every CaptionerTrainConfig option with the recipe laid over, tiny, the VLM) the way
    caption_jobs decides them; the tiny VLM is named here without being built."""
    from ml.captioning.captioner_training import CaptionerTrainConfig

    if settings.RELSIM_VLM_PATH.strip():
        folder = vlm_path()
        tiny = is_tiny_vlm(folder)
    else:
        folder, tiny = settings.DATA_DIR / "models" / TINY_VLM_FOLDER, True
    defaults: dict[str, Any] = {}
    for option in fields(CaptionerTrainConfig):
        if option.default is not MISSING:
            defaults[option.name] = option.default
        elif option.default_factory is not MISSING:
            defaults[option.name] = option.default_factory()
    if tiny:
        defaults.update(CAPTIONER_TINY_RECIPE)
    return defaults, tiny, str(folder)


# --- What a drafting pass covers ----------------------------------------------------------


def _blocking(captions: QuerySet[Caption]) -> tuple[Exists, Exists]:
    """Whether a caption a person wrote is approved or in review; whether a model's is."""
    live = Q(status__in=[Caption.Status.APPROVED, Caption.Status.DRAFT])
    people = [Caption.Source.HUMAN, Caption.Source.IMPORT]
    return (
        Exists(captions.filter(live, source__in=people)),
        Exists(captions.filter(live, source=Caption.Source.MODEL)),
    )


@dataclass(frozen=True)
class Targets:
    """What a drafting pass drafts for (ids in order) and what it leaves alone."""

    ids: list[int]
    skipped_human: int  # a person's caption is approved or in review: never drafted over
    skipped_model: int  # a model's draft is in review or approved already
    eligible: int  # before the limit


def group_targets(limit: int | None = None) -> Targets:
    """Groups of at least MIN_GROUP_SIZE images with no approved or pending caption."""
    human, model = _blocking(Caption.objects.filter(group=OuterRef("pk")))
    rows = (
        Group.objects.annotate(size=Count("members"))
        .filter(size__gte=MIN_GROUP_SIZE)
        .annotate(human_caption=human, model_caption=model)
        .order_by("id")
        .values_list("id", "human_caption", "model_caption")
    )
    return _targets(rows, limit)


def image_targets(threshold: float | None, limit: int | None = None) -> Targets:
    """Single images with a filter score at least `threshold` (every image when None) and
    no approved or pending caption of their own."""
    images = Image.objects.all()
    if threshold is not None:
        images = images.filter(filter_score__gte=threshold)
    human, model = _blocking(Caption.objects.filter(image=OuterRef("pk")))
    rows = (
        images.annotate(human_caption=human, model_caption=model)
        .order_by("id")
        .values_list("id", "human_caption", "model_caption")
    )
    return _targets(rows, limit)


def _targets(rows: Any, limit: int | None) -> Targets:
    ids: list[int] = []
    human = model = 0
    for pk, by_human, by_model in rows.iterator(chunk_size=2000):
        if by_human:
            human += 1
        elif by_model:
            model += 1
        else:
            ids.append(pk)
    eligible = len(ids)
    return Targets(ids[:limit] if limit else ids, human, model, eligible)


def images_are_filtered() -> bool:
    """Whether the pool has filter scores (an active filter): a threshold means something."""
    return Image.objects.filter(filter_score__isnull=False).exists()


# --- Quality from our own review ----------------------------------------------------------


@dataclass
class Quality:
    """How reviewers met one captioner's drafts under one prompt version, and how many of its
    drafts an audit of their batch decided instead (kept apart: nobody read those)."""

    model_name: str
    prompt_version: str
    model: TrainedModel | None = None
    drafts: int = 0  # every draft, however it was decided
    unchanged: int = 0  # approved as drafted
    edited: int = 0  # approved after edits
    edit_words: list[int] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)  # reason code -> count
    pending: int = 0
    accepted_by_audit: int = 0  # approved by accepting their batch's audit
    sent_back_by_audit: int = 0  # rejected by sending their batch back

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def by_audit(self) -> int:
        return self.accepted_by_audit + self.sent_back_by_audit

    @property
    def reviewed_or_pending(self) -> int:
        """The shares' denominator: drafts a reviewer decided plus those pending, that is
        every draft less those an audit decided."""
        return self.drafts - self.by_audit

    @property
    def mean_edit_words(self) -> float | None:
        return sum(self.edit_words) / len(self.edit_words) if self.edit_words else None

    def share(self, count: int) -> float:
        base = self.reviewed_or_pending
        return count / base if base else 0.0

    @property
    def unchanged_share(self) -> float:
        return self.share(self.unchanged)

    @property
    def edited_share(self) -> float:
        return self.share(self.edited)

    @property
    def rejected_share(self) -> float:
        return self.share(self.rejected_total)

    @property
    def pending_share(self) -> float:
        return self.share(self.pending)


def captioner_quality() -> list[Quality]:
    """Per model and prompt version, the model's drafts as reviewers judged them: approved
    unchanged, approved after edits (with the mean word edit distance from the draft),
    rejected by reason, pending. A draft approved and later superseded still counts as
    approved. A draft whose deciding revision (the latest that set it approved or rejected)
    came from an audit of its batch counts in accepted_by_audit or sent_back_by_audit
    instead. The shares are over reviewed_or_pending: unchanged + edited + rejected +
    pending, i.e. `drafts` less the audit-decided ones; `drafts` counts every draft."""
    revisions = CaptionRevision.objects.filter(caption=OuterRef("pk"))
    first = revisions.order_by("version", "id")
    # Superseding and members-changed revisions set other statuses: the latest approve or
    # reject is the one that decided the draft, whoever wrote it.
    deciding = revisions.filter(
        status_after__in=[Caption.Status.APPROVED, Caption.Status.REJECTED]
    ).order_by("-version", "-id")
    audited = CaptionRevision.objects.filter(
        pk=OuterRef("deciding"), details__has_key="audit_of_batch"
    )
    rows = (
        Caption.objects.filter(source=Caption.Source.MODEL)
        .annotate(
            drafted=Subquery(first.values("text_after")[:1]),
            deciding=Subquery(deciding.values("pk")[:1]),
        )
        .annotate(by_audit=Exists(audited))
        .order_by("model_name", "prompt_version", "id")
        .values_list(
            "model_name", "prompt_version", "status", "text", "drafted", "reject_reason", "by_audit"
        )
    )
    found: dict[tuple[str, str], Quality] = {}
    for name, version, status, text, drafted, reason, by_audit in rows.iterator(chunk_size=2000):
        quality = found.setdefault((name, version), Quality(name, version))
        quality.drafts += 1
        approved = status in (Caption.Status.APPROVED, Caption.Status.SUPERSEDED)
        if approved and by_audit:
            quality.accepted_by_audit += 1
        elif status == Caption.Status.REJECTED and by_audit:
            quality.sent_back_by_audit += 1
        elif approved:
            distance = word_edit_distance(drafted if drafted is not None else text, text)
            if distance:
                quality.edited += 1
                quality.edit_words.append(distance)
            else:
                quality.unchanged += 1
        elif status == Caption.Status.REJECTED:
            code = reason or "no reason"
            quality.rejected[code] = quality.rejected.get(code, 0) + 1
        else:
            quality.pending += 1
    models = {model_label(m): m for m in captioner_models()}
    for quality in found.values():
        quality.model = models.get(quality.model_name)
    return list(found.values())
