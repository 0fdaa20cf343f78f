"""The job that carries out an audit decision over a drafting batch's remaining drafts (a
batch at the paper's scale holds 100k of them), started when captions records a decision.
Retry goes on where it stopped."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.dispatch import receiver

from captions.audit_services import AuditRefused, AuditStopped, audit_apply
from captions.models import DraftAudit
from captions.signals import audit_decided
from core.errors import JobCancelled, JobInputError
from training import services
from training.models import Job
from training.reporting import JobReporter
from training.runners import runner


@receiver(audit_decided, dispatch_uid="training_audit_apply_job")
def _start_apply_job(
    *,
    audit: DraftAudit,
    note: str,
    comment: str,
    user: User,
    enqueue: bool,
    **_: Any,
) -> None:
    """Inside the decision's transaction: the job row, sent to the broker after commit."""
    params = {"audit": audit.pk, "note": note, "comment": comment}
    if enqueue:
        job = services.job_create(kind=Job.Kind.AUDIT_APPLY, params=params, user=user)
    else:
        job = Job.objects.create(
            kind=Job.Kind.AUDIT_APPLY, params=params, queue=Job.Queue.CPU, created_by=user
        )
    DraftAudit.objects.filter(pk=audit.pk).update(apply_job=job)


@runner(Job.Kind.AUDIT_APPLY)
def run_audit_apply(job: Job, reporter: JobReporter) -> dict[str, Any]:
    audit_id = job.params.get("audit")
    audit = (
        DraftAudit.objects.select_related("decided_by").filter(pk=audit_id).first()
        if isinstance(audit_id, int)
        else None
    )
    if audit is None:
        raise JobInputError(f"there is no audit #{audit_id}")
    note, comment = job.params.get("note"), job.params.get("comment", "")
    if not isinstance(note, str) or not note or not isinstance(comment, str):
        raise JobInputError("the job needs the decision's note and comment")
    reporter.log(f"{audit.get_decision_display()}: batch #{audit.job_id}")
    try:
        audit = audit_apply(
            audit=audit,
            note=note,
            comment=comment,
            progress=lambda done, total: reporter.progress(done, total, "drafts"),
            should_stop=reporter.should_stop,
        )
    except AuditRefused as refused:
        raise JobInputError(str(refused)) from None
    except AuditStopped as stopped:
        raise JobCancelled(f"{stopped}; Retry goes on from there") from None
    reporter.log(f"changed {audit.changed}, left for people {audit.skipped}")
    return {
        "audit": audit.pk,
        "batch": audit.job_id,
        "decision": audit.decision,
        "changed": audit.changed,
        "skipped": audit.skipped,
    }
