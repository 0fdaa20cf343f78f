"""Drafting batches and their audits: the list of batches, one batch's audit sample with its
running figures, and the admin's decision for the rest of the batch."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from captions import audit_selectors, audit_services
from captions.models import DraftAudit
from core.access import AUDIT_DECIDE, REVIEW, permission_required
from core.http import AuthedRequest


@require_GET
@permission_required(*REVIEW)
def batch_list(request: AuthedRequest) -> HttpResponse:
    batches = audit_selectors.drafting_batches()
    return render(request, "captions/batch_list.html", {"batches": batches})


@require_GET
@permission_required(*REVIEW)
def batch_detail(request: AuthedRequest, job_id: int) -> HttpResponse:
    batch = audit_selectors.drafting_batch(job_id)
    if batch is None:
        raise Http404("No drafting batch with that number.")
    audit = batch.audit
    found = audit_selectors.judgements(audit) if audit else []
    figures = audit_selectors.audit_figures(found) if audit else None
    remaining = audit_selectors.remaining_drafts(audit).count() if audit else 0
    context = {
        "batch": batch,
        "audit": audit,
        "judgements": found,
        "figures": figures,
        "remaining": remaining,
        "may_decide": request.user.has_perms(AUDIT_DECIDE),
        "sample_size": _sample_size(batch.drafts),
    }
    return render(request, "captions/batch_detail.html", context)


def _sample_size(drafts: int) -> int:
    return min(settings.RELSIM_AUDIT_SAMPLE_SIZE, drafts)


@require_POST
@permission_required(*AUDIT_DECIDE)
def batch_draw(request: AuthedRequest, job_id: int) -> HttpResponse:
    if audit_selectors.drafting_batch(job_id) is None:
        raise Http404("No drafting batch with that number.")
    already = DraftAudit.objects.filter(job_id=job_id).exists()
    try:
        audit = audit_services.audit_draw(job_id=job_id, user=request.user)
    except audit_services.AuditRefused as exc:
        messages.error(request, f"No sample drawn: {exc}")
    else:
        if already:
            messages.info(request, "The sample was already drawn; it stays as it is.")
        else:
            messages.success(request, f"Drew {len(audit.sample_ids)} drafts to audit.")
    return redirect("batch_detail", job_id=job_id)


def _audit_or_refuse(request: AuthedRequest, job_id: int, action: str) -> DraftAudit | None:
    if audit_selectors.drafting_batch(job_id) is None:
        raise Http404("No drafting batch with that number.")
    audit = DraftAudit.objects.filter(job_id=job_id).first()
    if audit is None:
        messages.error(request, f"Not {action}: draw and judge an audit sample first.")
    return audit


@require_POST
@permission_required(*AUDIT_DECIDE)
def batch_accept(request: AuthedRequest, job_id: int) -> HttpResponse:
    audit = _audit_or_refuse(request, job_id, "accepted")
    if audit is not None:
        try:
            audit = audit_services.audit_accept(audit=audit, user=request.user)
        except audit_services.AuditRefused as exc:
            messages.error(request, f"Not accepted: {exc}")
        else:
            messages.success(request, _started("accepted", "approves", audit))
    return redirect("batch_detail", job_id=job_id)


@require_POST
@permission_required(*AUDIT_DECIDE)
def batch_send_back(request: AuthedRequest, job_id: int) -> HttpResponse:
    audit = _audit_or_refuse(request, job_id, "sent back")
    comment = request.POST.get("comment", "")
    if audit is not None:
        if len(comment) > 500:
            messages.error(request, "Not sent back: keep the comment under 500 characters.")
            return redirect("batch_detail", job_id=job_id)
        try:
            audit = audit_services.audit_send_back(audit=audit, user=request.user, comment=comment)
        except audit_services.AuditRefused as exc:
            messages.error(request, f"Not sent back: {exc}")
        else:
            messages.success(request, _started("sent back", "rejects", audit))
    return redirect("batch_detail", job_id=job_id)


def _started(decided: str, verb: str, audit: DraftAudit) -> str:
    return (
        f"Batch {decided}: job #{audit.apply_job_id} {verb} the remaining drafts; "
        "this page follows it."
    )
