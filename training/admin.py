"""Admin pages for jobs: list, watch, cancel, retry, and start an import."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from core.http import AuthedRequest
from core.uploads import upload_refusal
from training import services
from training.forms import ImportJobForm
from training.models import Job, WorkerBeat


@admin.register(Job)
class JobAdmin(admin.ModelAdmin[Job]):
    list_display = [
        "id",
        "kind",
        "status",
        "progress_bar",
        "progress_message",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "kind", "queue"]
    search_fields = ["progress_message", "error", "worker"]
    readonly_fields = [
        "kind",
        "status",
        "queue",
        "progress_bar",
        "progress_message",
        "params",
        "error",
        "log_tail",
        "artifacts",
        "resume_point",
        "cancel_requested",
        "worker",
        "attempts",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
    ]
    exclude = ["progress"]
    actions = ["cancel_jobs", "retry_jobs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # Jobs start through their own forms (see the import page).

    @admin.display(description="progress")
    def progress_bar(self, obj: Job) -> str:
        percent = round(obj.progress * 100)
        return format_html(
            '<progress max="100" value="{}">{}%</progress> {}%', percent, percent, percent
        )

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="training_job_import",
            )
        ]
        return extra + super().get_urls()

    def import_view(self, request: AuthedRequest) -> HttpResponse:
        if not self.has_view_permission(request) or not request.user.has_perm("training.add_job"):
            messages.error(request, "You may not start jobs.")
            return HttpResponseRedirect(reverse("admin:index"))
        # Bound on every POST: a stopped upload can leave request.POST empty.
        bound = request.method == "POST"
        form = ImportJobForm(
            request.POST if bound else None,
            request.FILES if bound else None,
            upload_refused=upload_refusal(request) if bound else "",
        )
        if request.method == "POST" and form.is_valid():
            job = services.job_create(
                kind=form.cleaned_data["kind"], params=form.job_params(), user=request.user
            )
            if job.status == Job.Status.FAILED:
                messages.error(request, f"Job #{job.pk} not started: {job.error}")
            else:
                messages.success(request, f"Job #{job.pk} queued.")
            return HttpResponseRedirect(reverse("admin:training_job_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Start an import job",
            "form": form,
            "opts": self.model._meta,
        }
        return render(request, "admin/training/job/import.html", context)

    @admin.action(description="Cancel the selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in queryset:
            services.job_cancel(job=job)
        messages.success(request, f"Asked {queryset.count()} job(s) to stop.")

    @admin.action(description="Retry the selected failed or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        retried = unsent = 0
        for job in queryset.filter(status__in=[Job.Status.FAILED, Job.Status.CANCELLED]):
            if services.job_retry(job=job).status == Job.Status.FAILED:
                unsent += 1
            else:
                retried += 1
        messages.success(request, f"Queued {retried} job(s) again.")
        if unsent:
            messages.error(request, f"{unsent} job(s) not queued: the job queue cannot be reached.")


@admin.register(WorkerBeat)
class WorkerBeatAdmin(admin.ModelAdmin[WorkerBeat]):
    list_display = ["name", "queues", "pid", "started_at", "last_seen"]
    readonly_fields = ["name", "queues", "pid", "started_at", "last_seen"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # Workers write their own rows.
