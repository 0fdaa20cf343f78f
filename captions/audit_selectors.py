"""Reads for the audit of drafting batches: the batches, their drafts, and the running
figures of an audit sample as reviewers judge it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet

from captions.models import Caption, CaptionRevision, DraftAudit
from core.intervals import wilson_interval

ACCEPT = "accept"
SEND_BACK = "send back"


@dataclass(frozen=True)
class Batch:
    """The model drafts one drafting job wrote."""

    job_id: int
    job_status: str
    created_at: datetime | None
    model_name: str
    prompt_version: str
    drafts: int
    still_drafts: int
    audit: DraftAudit | None

    @property
    def audit_state(self) -> str:
        if self.audit is None:
            return "no sample"
        if self.audit.decision:
            return self.audit.get_decision_display()
        return "sample drawn"


def batch_drafts(job_id: int) -> QuerySet[Caption]:
    return Caption.objects.filter(draft_job_id=job_id, source=Caption.Source.MODEL)


def _batches(drafts: QuerySet[Caption]) -> list[Batch]:
    rows = (
        drafts.values("draft_job_id")
        .annotate(
            job_status=Max("draft_job__status"),
            created_at=Max("draft_job__created_at"),
            # One job drafts with one model; the prompt version is the model's too.
            model_name=Min("model_name"),
            prompt_version=Min("prompt_version"),
            drafts=Count("id"),
            still_drafts=Count("id", filter=Q(status=Caption.Status.DRAFT)),
        )
        .order_by("-draft_job_id")
    )
    found = list(rows)
    ids = [row["draft_job_id"] for row in found]
    audits = {audit.job_id: audit for audit in DraftAudit.objects.filter(job_id__in=ids)}
    return [
        Batch(
            job_id=row["draft_job_id"],
            job_status=row["job_status"] or "",
            created_at=row["created_at"],
            model_name=row["model_name"] or "",
            prompt_version=row["prompt_version"] or "",
            drafts=row["drafts"],
            still_drafts=row["still_drafts"],
            audit=audits.get(row["draft_job_id"]),
        )
        for row in found
    ]


def drafting_batches() -> list[Batch]:
    """Every drafting job that wrote model drafts, newest first."""
    return _batches(Caption.objects.filter(source=Caption.Source.MODEL, draft_job__isnull=False))


def drafting_batch(job_id: int) -> Batch | None:
    found = _batches(batch_drafts(job_id))
    return found[0] if found else None


def _has_approved_sibling() -> Q:
    # An approved caption of the same group or image: approving the draft would supersede it.
    approved = Caption.objects.filter(status=Caption.Status.APPROVED).exclude(pk=OuterRef("pk"))
    return Exists(approved.filter(group=OuterRef("group_id"))) | Exists(
        approved.filter(image=OuterRef("image_id"))
    )


def remaining_drafts(audit: DraftAudit) -> QuerySet[Caption]:
    """What a decision may change: the batch's drafts outside the sample that nobody touched
    since the model wrote them (version 1: no edit, no review), oldest first."""
    return (
        batch_drafts(audit.job_id)
        .filter(status=Caption.Status.DRAFT, version=1)
        .exclude(pk__in=audit.sample_ids)
        .order_by("id")
    )


def remaining_blocked(audit: DraftAudit) -> QuerySet[Caption]:
    """Remaining drafts whose group or image has an approved caption meanwhile."""
    return remaining_drafts(audit).filter(_has_approved_sibling())


@dataclass(frozen=True)
class Judgement:
    """How reviewers met one sampled draft: its first review decides."""

    caption: Caption
    verdict: str  # "approved", "edited", "rejected" or "" (not judged yet)
    reason: str = ""


@dataclass(frozen=True)
class AuditFigures:
    """The sample's figures. Approved means approved unchanged: the audit asks how good the
    model's text is, and an edited draft needed a person. Edited drafts are shown apart."""

    sampled: int
    judged: int
    approved: int
    edited: int
    rejected: int
    accept_rate: float

    @property
    def complete(self) -> bool:
        return self.sampled > 0 and self.judged == self.sampled

    @property
    def rate(self) -> float | None:
        return self.approved / self.judged if self.judged else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.approved, self.judged)

    @property
    def recommendation(self) -> str:
        """Once every sampled draft is judged: accept when the share approved unchanged
        reaches the rate, else send back; "" before."""
        if not self.complete or self.rate is None:
            return ""
        return ACCEPT if self.rate >= self.accept_rate else SEND_BACK

    @property
    def lower_bound_clears(self) -> bool:
        return self.interval[0] >= self.accept_rate

    def summary(self) -> str:
        low, high = self.interval
        return (
            f"{self.approved} of {self.judged} approved unchanged "
            f"(95% CI {low:.2f}-{high:.2f}; {self.edited} edited, {self.rejected} rejected)"
        )

    def as_record(self) -> dict[str, Any]:
        low, high = self.interval
        return {
            "sampled": self.sampled,
            "judged": self.judged,
            "approved": self.approved,
            "edited": self.edited,
            "rejected": self.rejected,
            "rate": self.rate,
            "low": low,
            "high": high,
            "accept_rate": self.accept_rate,
            "recommendation": self.recommendation,
        }


def judgements(audit: DraftAudit) -> list[Judgement]:
    """The sampled drafts in the order drawn, each with its first review's verdict; later
    events (a revision after a rejection, a superseding caption) leave the verdict alone."""
    captions = Caption.objects.select_related("group", "image").in_bulk(audit.sample_ids)
    revisions = CaptionRevision.objects.filter(caption_id__in=audit.sample_ids).order_by(
        "caption_id", "version", "id"
    )
    drafted: dict[int, str] = {}
    verdicts: dict[int, tuple[str, str]] = {}
    for revision in revisions:
        pk = revision.caption_id
        drafted.setdefault(pk, revision.text_after)
        if pk in verdicts:
            continue
        if revision.action == CaptionRevision.Action.APPROVE:
            edited = revision.text_after != drafted[pk]
            verdicts[pk] = ("edited" if edited else "approved", "")
        elif revision.action == CaptionRevision.Action.REJECT:
            verdicts[pk] = ("rejected", revision.reason)
    found = []
    for pk in audit.sample_ids:
        caption = captions.get(pk)
        if caption is not None:  # a deleted draft drops out of the sample
            verdict, reason = verdicts.get(pk, ("", ""))
            found.append(Judgement(caption, verdict, reason))
    return found


def audit_figures(found: list[Judgement]) -> AuditFigures:
    counts = dict.fromkeys(("approved", "edited", "rejected"), 0)
    for judgement in found:
        if judgement.verdict:
            counts[judgement.verdict] += 1
    return AuditFigures(
        sampled=len(found),
        judged=sum(counts.values()),
        approved=counts["approved"],
        edited=counts["edited"],
        rejected=counts["rejected"],
        accept_rate=settings.RELSIM_AUDIT_ACCEPT_RATE,
    )
