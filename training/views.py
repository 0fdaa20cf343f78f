"""Import and export pages, live job status (with retry and cancel) and export download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from core.access import EXPORT, permission_required
from core.http import AuthedRequest
from core.splits import Split
from core.uploads import upload_refusal
from training import selectors, services
from training.forms import ImportJobForm
from training.job_views import job_page_extras
from training.models import Job


class ExportForm(forms.Form):
    include_drafts = forms.BooleanField(required=False, label="Include drafts")
    splits = forms.MultipleChoiceField(
        choices=Split.choices,
        initial=list(Split.values),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one split."},
    )


@require_http_methods(["GET", "POST"])
@permission_required(*EXPORT)
def export_page(request: AuthedRequest) -> HttpResponse:
    form = ExportForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        job = services.job_create(
            kind=Job.Kind.EXPORT_DATASET,
            params={
                "include_drafts": form.cleaned_data["include_drafts"],
                "splits": form.cleaned_data["splits"],
            },
            user=request.user,
        )
        if job.status == Job.Status.FAILED:
            messages.error(request, "The export was not started: the job queue cannot be reached.")
        return redirect("job_detail", job_id=job.pk)
    exports = Job.objects.filter(kind=Job.Kind.EXPORT_DATASET).order_by("-created_at")[:20]
    return render(request, "training/export.html", {"form": form, "exports": exports})


IMPORT_KINDS = (Job.Kind.IMPORT_IMAGES, Job.Kind.IMPORT_SEED_GROUPS, Job.Kind.IMPORT_CAPTIONS)


def _import_report(job: Job) -> dict[str, Any] | None:
    report = job.artifacts.get("report") if job.kind in IMPORT_KINDS else None
    return report if isinstance(report, dict) else None


def _status_label(job: Job) -> str:
    """The status as a person reads it: a run that turned files away succeeded with warnings."""
    report = _import_report(job)
    if job.status == Job.Status.SUCCEEDED and report and report.get("rejected"):
        return "succeeded with warnings"
    return str(job.status)


def _nothing_imported(report: dict[str, Any] | None) -> str:
    """Say so plainly when an import added nothing new and turned something away."""
    if not report or report.get("accepted") or not report.get("rejected"):
        return ""
    rejected = len(report["rejected"])
    text = f"Nothing was imported: {rejected} rejected"
    if report.get("duplicates"):
        text += f", {report['duplicates']} already here"
    return text + "."


def _report_summary(report: dict[str, Any] | None) -> str:
    if not report:
        return ""
    return (
        f"{report.get('accepted', 0)} accepted, {report.get('duplicates', 0)} already here, "
        f"{len(report.get('rejected', []))} rejected"
    )


@require_http_methods(["GET", "POST"])
@permission_required(*EXPORT)
def import_page(request: AuthedRequest) -> HttpResponse:
    # Bound on every POST: a stopped upload can leave request.POST empty.
    bound = request.method == "POST"
    form = ImportJobForm(
        request.POST if bound else None,
        request.FILES if bound else None,
        upload_refused=upload_refusal(request) if bound else "",
    )
    if bound and form.is_valid():
        job = services.job_create(
            kind=form.cleaned_data["kind"], params=form.job_params(), user=request.user
        )
        if job.status == Job.Status.FAILED:
            messages.error(request, "The import was not started: the job queue cannot be reached.")
        return redirect("job_detail", job_id=job.pk)
    jobs = Job.objects.filter(kind__in=IMPORT_KINDS).order_by("-created_at")[:20]
    imports = [
        {"job": job, "label": _status_label(job), "summary": _report_summary(_import_report(job))}
        for job in jobs
    ]
    return render(request, "training/import.html", {"form": form, "imports": imports})


@require_GET
@permission_required(*EXPORT)
def job_detail(request: AuthedRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    report = _import_report(job) if job.status == Job.Status.SUCCEEDED else None
    warning = selectors.job_warning(job)
    context = {
        "job": job,
        "is_import": job.kind in IMPORT_KINDS,
        "label": _status_label(job),
        "report": report,
        "nothing_imported": _nothing_imported(report),
        "warning": warning,
        # Time left, place in the queue, outputs, curves: training/job_views.py.
        **job_page_extras(job, warning=warning),
    }
    if request.htmx:
        response = render(request, "training/job_detail.html#status", context)
        if job.is_finished:
            # A finished job stops the polling; the whole card is re-rendered once more.
            return HttpResponseStopPolling(response.content)
        return response
    return render(request, "training/job_detail.html", context)


@require_POST
@permission_required(*EXPORT)
def job_retry(request: AuthedRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    try:
        job = services.job_retry(job=job)
    except ValueError as exc:
        messages.error(request, f"Not retried: {exc}.")
    else:
        if job.status == Job.Status.FAILED:
            messages.error(request, "Not queued: the job queue still cannot be reached.")
        else:
            messages.success(request, f"Job #{job.pk} queued again.")
    return redirect("job_detail", job_id=job.pk)


@require_POST
@permission_required(*EXPORT)
def job_cancel(request: AuthedRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    if job.is_finished:
        messages.info(request, f"Job #{job.pk} has already {job.status}.")
    else:
        services.job_cancel(job=job)
        messages.success(request, f"Asked job #{job.pk} to stop.")
    return redirect("job_detail", job_id=job.pk)


@require_GET
@permission_required(*EXPORT)
def export_download(request: AuthedRequest, job_id: int) -> FileResponse:
    job = get_object_or_404(
        Job, pk=job_id, kind=Job.Kind.EXPORT_DATASET, status=Job.Status.SUCCEEDED
    )
    path = Path(str(job.artifacts.get("path", ""))).resolve()
    exports = (settings.DATA_DIR / "exports").resolve()
    if not path.is_relative_to(exports) or not path.is_file():
        raise Http404("The export file is no longer there.")
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
