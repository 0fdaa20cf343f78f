"""The job that carries out an audit decision over a drafting batch's remaining drafts (a
batch at the paper's scale holds 100k of them). Retry goes on where it stopped."""

from __future__ import annotations

from typing import Any

from captions.audit_services import AuditRefused, AuditStopped, audit_apply
from captions.models import DraftAudit
from core.errors import JobCancelled, JobInputError
from training.models import Job
from training.reporting import JobReporter
from training.runners import runner


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
