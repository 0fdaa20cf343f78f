"""Writes for the audit of a drafting batch: draw its sample once, then accept the batch
(approve the drafts nobody read) or send it back (reject them), recorded on the audit and in
each caption's history. Neither touches a draft a person edited or judged."""

from __future__ import annotations

import random
import secrets

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from captions.audit_selectors import (
    AuditFigures,
    audit_figures,
    batch_drafts,
    judgements,
    remaining_blocked,
    remaining_drafts,
)
from captions.lint import lint_caption
from captions.models import Caption, CaptionRevision, DraftAudit

# Job states in which the drafting job may still add drafts to its batch.
_STILL_DRAFTING = ("pending", "running")


class AuditRefused(Exception):
    """The audit action cannot be done now; the message says why."""


def audit_draw(*, job_id: int, user: User | None, size: int | None = None) -> DraftAudit:
    """Draw the batch's sample (RELSIM_AUDIT_SAMPLE_SIZE drafts, all when fewer) from all its
    model drafts, judged or not, so the sample stands for the whole batch. Drawn once: a
    second call returns the stored sample."""
    wanted = settings.RELSIM_AUDIT_SAMPLE_SIZE if size is None else size
    with transaction.atomic():
        existing = DraftAudit.objects.filter(job_id=job_id).first()
        if existing is not None:
            return existing
        drafts = batch_drafts(job_id)
        first = drafts.select_related("draft_job").first()
        if first is None or first.draft_job is None:
            raise AuditRefused(f"Batch #{job_id} holds no model drafts.")
        if first.draft_job.status in _STILL_DRAFTING:
            raise AuditRefused(
                f"Batch #{job_id} is still being drafted: draw the sample when its job ends."
            )
        ids = sorted(drafts.values_list("id", flat=True))
        seed = secrets.randbits(31)
        sample = random.Random(seed).sample(ids, min(wanted, len(ids)))
        try:
            with transaction.atomic():
                return DraftAudit.objects.create(
                    job_id=job_id,
                    seed=seed,
                    sample_ids=sample,
                    batch_size=len(ids),
                    drawn_by=user,
                )
        except IntegrityError:
            # Someone drew it at the same moment: theirs is the sample.
            return DraftAudit.objects.get(job_id=job_id)


def _decidable(audit: DraftAudit) -> AuditFigures:
    if audit.decision:
        raise AuditRefused(
            f"Batch #{audit.job_id} was already {audit.get_decision_display()}"
            f"{f' by {audit.decided_by}' if audit.decided_by else ''}."
        )
    figures = audit_figures(judgements(audit))
    if figures.sampled == 0:
        raise AuditRefused("The sample holds no drafts any more: nothing to decide on.")
    if not figures.complete:
        waiting = figures.sampled - figures.judged
        raise AuditRefused(
            f"{waiting} of the {figures.sampled} sampled drafts still wait for a reviewer: "
            "judge the whole sample first."
        )
    return figures


def _claim(audit: DraftAudit, decision: str, user: User, figures: AuditFigures) -> bool:
    """Record the decision unless someone decided first (a conditional UPDATE)."""
    now = timezone.now()
    claimed = DraftAudit.objects.filter(pk=audit.pk, decision="").update(
        decision=decision, decided_by=user, decided_at=now, figures=figures.as_record()
    )
    return claimed == 1


def audit_accept(*, audit: DraftAudit, user: User) -> DraftAudit:
    """Approve the batch's remaining drafts, each with a revision naming the audit. A draft
    with lint errors, or whose group or image got an approved caption meanwhile, stays a
    draft for a person (counted as skipped)."""
    figures = _decidable(audit)
    note = f"approved by audit of batch #{audit.job_id}: {_result(figures)}"
    with transaction.atomic():
        if not _claim(audit, DraftAudit.Decision.ACCEPTED, user, figures):
            raise AuditRefused(f"Batch #{audit.job_id} was decided meanwhile.")
        blocked = set(remaining_blocked(audit).values_list("id", flat=True))
        changed = skipped = 0
        for caption in remaining_drafts(audit).iterator(chunk_size=1000):
            if caption.pk in blocked or lint_caption(caption.text).errors:
                skipped += 1
                continue
            try:
                with transaction.atomic():
                    done = _move(caption, user, Caption.Status.APPROVED, note=note)
            except IntegrityError:
                # An approved caption for the same target arrived after the check.
                done = False
            changed += done
            skipped += not done
        DraftAudit.objects.filter(pk=audit.pk).update(changed=changed, skipped=skipped)
    audit.refresh_from_db()
    return audit


def audit_send_back(*, audit: DraftAudit, user: User, comment: str = "") -> DraftAudit:
    """Reject the batch's remaining drafts with the send-back reason code and a comment
    naming the audit and its figures."""
    reason = settings.RELSIM_AUDIT_SEND_BACK_REASON
    if reason not in settings.RELSIM_REJECT_REASONS:
        raise AuditRefused(
            f"The reason code {reason!r} is not among RELSIM_REJECT_REASONS: add it to send "
            "a batch back."
        )
    figures = _decidable(audit)
    extra = " ".join(comment.split())
    note = f"sent back by audit of batch #{audit.job_id}: {_result(figures)}"
    full_comment = f"{note}. {extra}" if extra else note
    with transaction.atomic():
        if not _claim(audit, DraftAudit.Decision.SENT_BACK, user, figures):
            raise AuditRefused(f"Batch #{audit.job_id} was decided meanwhile.")
        changed = 0
        for caption in remaining_drafts(audit).iterator(chunk_size=1000):
            changed += _move(
                caption,
                user,
                Caption.Status.REJECTED,
                reason=reason,
                comment=full_comment[:1000],
            )
        DraftAudit.objects.filter(pk=audit.pk).update(changed=changed)
    audit.refresh_from_db()
    return audit


def _result(figures: AuditFigures) -> str:
    low, high = figures.interval
    return f"{figures.approved} of {figures.judged} approved (CI {low:.2f}-{high:.2f})"


def _move(
    caption: Caption,
    user: User,
    status: str,
    *,
    note: str = "",
    reason: str = "",
    comment: str = "",
) -> bool:
    """Review one untouched draft; False when it changed since it was read (a conditional
    UPDATE on the model's own version 1, so a person's edit or verdict is never overwritten)."""
    now = timezone.now()
    updated = Caption.objects.filter(
        pk=caption.pk, status=Caption.Status.DRAFT, version=caption.version
    ).update(
        status=status,
        reviewer=user,
        reviewed_at=now,
        reject_reason=reason,
        reject_comment=comment,
        version=F("version") + 1,
        updated_at=now,
    )
    if updated != 1:
        return False
    approving = status == Caption.Status.APPROVED
    CaptionRevision.objects.create(
        caption=caption,
        actor=user,
        action=CaptionRevision.Action.APPROVE if approving else CaptionRevision.Action.REJECT,
        text_before=caption.text,
        text_after=caption.text,
        status_after=status,
        version=caption.version + 1,
        reason=(note if approving else reason)[:500],
        details={
            "audit_of_batch": caption.draft_job_id,
            **({"comment": comment} if comment else {}),
        },
    )
    return True
