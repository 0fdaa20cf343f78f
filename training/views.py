"""Export page, live job status (with retry and cancel) and export download."""

from __future__ import annotations

from pathlib import Path

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
from training import selectors, services
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


@require_GET
@permission_required(*EXPORT)
def job_detail(request: AuthedRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    context = {"job": job, "warning": selectors.job_warning(job)}
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
