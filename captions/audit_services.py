"""Writes for the audit of a drafting batch: draw its sample once, then accept the batch
(approve the drafts nobody read) or send it back (reject them), recorded on the audit and in
each caption's history. Neither touches a draft a person edited or judged."""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable

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
from captions.selectors import members_in_order
from captions.signals import audit_decided

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


def audit_accept(*, audit: DraftAudit, user: User, enqueue: bool = True) -> DraftAudit:
    """Record the decision to approve the batch's remaining drafts and start the job that
    does it (a batch at the paper's scale holds 100k drafts: more than a request should
    carry). A draft with lint errors, or whose group or image has an approved caption by
    then, stays a draft for a person (counted as skipped)."""
    figures = _decidable(audit)
    note = f"approved by audit of batch #{audit.job_id}: {_result(figures)}"
    return _decide(audit, DraftAudit.Decision.ACCEPTED, user, figures, note, "", enqueue)


def audit_send_back(
    *, audit: DraftAudit, user: User, comment: str = "", enqueue: bool = True
) -> DraftAudit:
    """Record the decision to reject the batch's remaining drafts (the send-back reason
    code, a comment naming the audit and its figures) and start the job that does it."""
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
    return _decide(audit, DraftAudit.Decision.SENT_BACK, user, figures, note, full_comment, enqueue)


def _decide(
    audit: DraftAudit,
    decision: str,
    user: User,
    figures: AuditFigures,
    note: str,
    comment: str,
    enqueue: bool,
) -> DraftAudit:
    """Record the decision; whoever carries decisions out hears of it in the same
    transaction (training starts a job), so a decision never stands without its job."""
    with transaction.atomic():
        if not _claim(audit, decision, user, figures):
            raise AuditRefused(f"Batch #{audit.job_id} was decided meanwhile.")
        audit_decided.send(
            sender=DraftAudit,
            audit=audit,
            note=note,
            comment=comment[:1000],
            user=user,
            enqueue=enqueue,
        )
    audit.refresh_from_db()
    return audit


# Drafts moved per transaction: short locks, and progress a person can watch.
APPLY_CHUNK = 1000


def audit_apply(
    *,
    audit: DraftAudit,
    note: str,
    comment: str = "",
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DraftAudit:
    """Carry out the recorded decision on the batch's remaining drafts, a chunk per
    transaction. Stopping and running again goes on where it stopped: a moved draft is no
    longer remaining. `skipped` is what is left for people at the end."""
    if not audit.decision or audit.decided_by is None:
        raise AuditRefused(f"Batch #{audit.job_id} has no decision to carry out.")
    ids = list(remaining_drafts(audit).values_list("id", flat=True))
    done = 0
    for start in range(0, len(ids), APPLY_CHUNK):
        if should_stop is not None and should_stop():
            raise AuditStopped(f"stopped after {done} of {len(ids)} drafts")
        chunk = ids[start : start + APPLY_CHUNK]
        _apply_chunk(audit, chunk, note, comment)
        done += len(chunk)
        if progress is not None:
            progress(done, len(ids))
    DraftAudit.objects.filter(pk=audit.pk).update(skipped=remaining_drafts(audit).count())
    audit.refresh_from_db()
    return audit


class AuditStopped(Exception):
    """Applying a decision stopped when asked; running it again goes on from there."""


def _count(audit: DraftAudit, moved: int) -> None:
    """Add to the audit's count in the transaction that moved the drafts, so that a worker
    killed in between neither loses nor doubles any (a retry only sees drafts not moved)."""
    if moved:
        DraftAudit.objects.filter(pk=audit.pk).update(changed=F("changed") + moved)


def _apply_chunk(audit: DraftAudit, ids: list[int], note: str, comment: str) -> None:
    """Move one chunk in one transaction, with one UPDATE and one INSERT. Should another
    approval for the same group or image arrive meanwhile, the chunk goes draft by draft."""
    approving = audit.decision == DraftAudit.Decision.ACCEPTED
    status = Caption.Status.APPROVED if approving else Caption.Status.REJECTED
    reason = "" if approving else settings.RELSIM_AUDIT_SEND_BACK_REASON
    user = _decider(audit)
    try:
        with transaction.atomic():
            _count(audit, _apply_together(audit, ids, user, status, note, reason, comment))
            return
    except IntegrityError:
        pass
    for caption in Caption.objects.filter(pk__in=ids, status=Caption.Status.DRAFT, version=1):
        if approving and (_blocked(audit, [caption.pk]) or lint_caption(caption.text).errors):
            continue
        try:
            with transaction.atomic():
                moved = _move(caption, user, status, note=note, reason=reason, comment=comment)
                _count(audit, int(moved))
        except IntegrityError:
            continue  # an approved caption for the same target arrived after the check


def _decider(audit: DraftAudit) -> User:
    assert audit.decided_by is not None  # checked by audit_apply
    return audit.decided_by


def _blocked(audit: DraftAudit, ids: list[int]) -> set[int]:
    return set(remaining_blocked(audit).filter(pk__in=ids).values_list("id", flat=True))


def _apply_together(
    audit: DraftAudit,
    ids: list[int],
    user: User,
    status: str,
    note: str,
    reason: str,
    comment: str,
) -> int:
    # Locked, so nobody's edit or verdict lands between reading a draft and moving it.
    drafts = list(
        Caption.objects.select_for_update()
        .filter(pk__in=ids, status=Caption.Status.DRAFT, version=1)
        .only("id", "text", "draft_job_id", "group_id", "version")
        .order_by("id")  # one lock order for everyone who locks captions
    )
    approving = status == Caption.Status.APPROVED
    if approving:
        blocked = _blocked(audit, ids)
        drafts = [c for c in drafts if c.pk not in blocked and not lint_caption(c.text).errors]
    if not drafts:
        return 0
    moved = Caption.objects.filter(
        pk__in=[c.pk for c in drafts], status=Caption.Status.DRAFT, version=1
    ).update(version=2, **_decided(status, user, reason, comment))
    if moved != len(drafts):
        # Not locked after all (a database without row locks): go draft by draft.
        raise IntegrityError("drafts changed while being moved")
    members = members_in_order(c.group_id for c in drafts if c.group_id) if approving else {}
    CaptionRevision.objects.bulk_create(
        [
            _revision(c, user, status, note=note, reason=reason, comment=comment, members=members)
            for c in drafts
        ],
        batch_size=APPLY_CHUNK,
    )
    return moved


def _decided(status: str, user: User, reason: str, comment: str) -> dict[str, object]:
    """The fields an audit sets on a draft it decides (besides its version)."""
    now = timezone.now()
    return {
        "status": status,
        "reviewer": user,
        "reviewed_at": now,
        "reject_reason": reason,
        "reject_comment": comment,
        "updated_at": now,
    }


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
    updated = Caption.objects.filter(
        pk=caption.pk, status=Caption.Status.DRAFT, version=caption.version
    ).update(version=F("version") + 1, **_decided(status, user, reason, comment))
    if updated != 1:
        return False
    members = (
        members_in_order([caption.group_id])
        if caption.group_id and status == Caption.Status.APPROVED
        else {}
    )
    _revision(
        caption, user, status, note=note, reason=reason, comment=comment, members=members
    ).save()
    return True


def _revision(
    caption: Caption,
    user: User,
    status: str,
    *,
    note: str,
    reason: str,
    comment: str,
    members: dict[int, list[int]],
) -> CaptionRevision:
    """The history entry for a draft an audit decided: it names the audit's batch, which is
    how the figures of reviewers' own judgements leave these out. An approved group caption
    records the group's images, as a reviewer's approval does, to show later changes."""
    approving = status == Caption.Status.APPROVED
    details: dict[str, object] = {"audit_of_batch": caption.draft_job_id}
    if comment:
        details["comment"] = comment
    if approving and caption.group_id:
        details["members"] = members.get(caption.group_id, [])
    return CaptionRevision(
        caption=caption,
        actor=user,
        action=CaptionRevision.Action.APPROVE if approving else CaptionRevision.Action.REJECT,
        text_before=caption.text,
        text_after=caption.text,
        status_after=status,
        version=caption.version + 1,
        reason=(note if approving else reason)[:500],
        details=details,
    )
