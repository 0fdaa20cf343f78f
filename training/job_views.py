"""Job pages beyond a single job's status: the jobs list, a run's metrics as JSON for the
live curves, two runs side by side, and what the job page adds while a job runs (time left,
place in the queue, what it made)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.db.models import Count, Q, QuerySet
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from core.access import EXPORT, permission_required
from core.http import AuthedRequest
from core.ids import parse_ids
from training.models import EmbeddingIndex, Job, JobMetric, TrainedModel

PAGE_SIZE = 50
# One answer of the metrics endpoint carries at most this many steps; the page asks again
# with ?after= for the rest, so a long run never makes one huge response.
MAX_POINTS = 5000
# Step numbers and ids are 32-bit integers on PostgreSQL; larger ones match nothing.
MAX_INT = 2**31 - 1
# Curves first offered on a training job's page; every other numeric series can be chosen.
DEFAULT_SERIES = ("loss", "lr")
# Below this fraction an estimate of the time left is noise (set-up, data loading).
ETA_MIN_PROGRESS = 0.01
ETA_MIN_SECONDS = 5.0
ACTIVE = "active"
WAITING = (Job.Status.PENDING, Job.Status.RUNNING)


# --- What the job page adds (used by training.views.job_detail) --------------------------


def duration_text(seconds: float) -> str:
    """A duration as a person reads it: '45 s', '6 min 40 s', '2 h 5 min', '1 d 3 h'."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def job_eta(job: Job, now: datetime | None = None) -> str:
    """Elapsed time and the time left at the current pace, for a running job."""
    if job.status != Job.Status.RUNNING or job.started_at is None:
        return ""
    elapsed = ((now or timezone.now()) - job.started_at).total_seconds()
    text = f"Running for {duration_text(elapsed)}"
    if job.progress < ETA_MIN_PROGRESS or elapsed < ETA_MIN_SECONDS:
        return f"{text}; no estimate of the time left yet."
    # Progress counts from the claim, so a resumed run (which starts part-way) reads a
    # little optimistic until its pace settles.
    left = elapsed * (1.0 - job.progress) / job.progress
    return f"{text}; about {duration_text(left)} left at this pace."


def jobs_ahead(job: Job) -> dict[str, int]:
    """Jobs of the same queue, pending or running, created before this pending one."""
    if job.status != Job.Status.PENDING:
        return {}
    earlier = Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, pk__lt=job.pk)
    rows = (
        Job.objects.filter(earlier, queue=job.queue, status__in=WAITING)
        .values("status")
        .annotate(n=Count("id"))
    )
    counts = {str(row["status"]): int(row["n"]) for row in rows}
    running = counts.get(Job.Status.RUNNING, 0)
    pending = counts.get(Job.Status.PENDING, 0)
    return {"total": running + pending, "running": running, "pending": pending}


def _url_or_blank(name: str, args: list[Any] | None = None, anchor: str = "") -> str:
    try:
        url = reverse(name, args=args)
    except NoReverseMatch:
        return ""
    return f"{url}#{anchor}" if anchor else url


def model_url(model_id: int) -> str:
    """The model's page: its own when there is one, else its row on the models list."""
    return _url_or_blank("model_detail", [model_id]) or _url_or_blank(
        "model_list", anchor=f"model-{model_id}"
    )


def index_url(index_id: int) -> str:
    return _url_or_blank("index_detail", [index_id]) or _url_or_blank(
        "model_list", anchor=f"index-{index_id}"
    )


def _artifact_id(job: Job, key: str) -> int | None:
    value = job.artifacts.get(key) if isinstance(job.artifacts, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def job_outputs(job: Job) -> list[dict[str, str]]:
    """The models and indexes the job made or used, each with a link where a page exists."""
    model_id = _artifact_id(job, "model_id")
    index_id = _artifact_id(job, "index_id")
    outputs: list[dict[str, str]] = []
    models = TrainedModel.objects.filter(Q(job=job) | Q(pk=model_id or 0)).only(
        "id", "kind", "name", "is_active", "job_id"
    )
    found = set()
    for model in models:
        found.add(model.pk)
        active = " (active)" if model.is_active else ""
        outputs.append(
            {
                "role": "made" if model.job_id == job.pk else "used",
                "text": f"{model.get_kind_display()} model #{model.pk} “{model.name}”{active}",
                "url": model_url(model.pk),
                "id": f"model-{model.pk}",
            }
        )
    if model_id is not None and model_id not in found:
        role = "made" if job.kind == Job.Kind.TRAIN_RELSIM else "used"
        outputs.append(
            {"role": role, "text": f"model #{model_id} (since deleted)", "url": "", "id": ""}
        )
    indexes = EmbeddingIndex.objects.filter(Q(job=job) | Q(pk=index_id or 0)).only(
        "id", "count", "dim", "job_id"
    )
    found = set()
    for index in indexes:
        found.add(index.pk)
        outputs.append(
            {
                "role": "made" if index.job_id == job.pk else "used",
                "text": f"embedding index #{index.pk}: {index.count} images, dim {index.dim}",
                "url": index_url(index.pk),
                "id": f"index-{index.pk}",
            }
        )
    if index_id is not None and index_id not in found:
        outputs.append(
            {"role": "made", "text": f"index #{index_id} (since deleted)", "url": "", "id": ""}
        )
    return outputs


def has_curves(job: Job) -> bool:
    return job.kind == Job.Kind.TRAIN_RELSIM or JobMetric.objects.filter(job=job).exists()


def job_page_extras(job: Job, *, warning: str) -> dict[str, Any]:
    """The job page's extra context: time left, place in the queue (unless no worker serves
    the queue at all, which the warning says), outputs, and whether it has curves."""
    return {
        "eta": job_eta(job),
        "ahead": {} if warning else jobs_ahead(job),
        "outputs": job_outputs(job) if job.artifacts or job.is_finished else [],
        "show_curves": has_curves(job),
    }


# --- The jobs list ------------------------------------------------------------------------


class JobFilterForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[("", "any kind"), *Job.Kind.choices],
        required=False,
        error_messages={"invalid_choice": "There is no job kind “%(value)s”."},
    )
    status = forms.ChoiceField(
        choices=[("", "any status"), (ACTIVE, "pending or running"), *Job.Status.choices],
        required=False,
        error_messages={"invalid_choice": "There is no job status “%(value)s”."},
    )
    user = forms.CharField(required=False, max_length=150)
    after = forms.IntegerField(required=False, min_value=1, max_value=MAX_INT)
    before = forms.IntegerField(required=False, min_value=1, max_value=MAX_INT)

    def clean_user(self) -> User | None:
        name: str = self.cleaned_data.get("user") or ""
        if not name:
            return None
        user = User.objects.filter(username=name).first()
        if user is None:
            raise forms.ValidationError(f"There is no user “{name}”.")
        return user

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # A cursor is a job id; the page goes on from that job's (created_at, id).
        for key in ("after", "before"):
            if data.get(key) is not None:
                created = Job.objects.filter(pk=data[key]).values_list("created_at", flat=True)
                cursor = created.first()
                if cursor is None:
                    self.add_error(key, "This page link is no longer valid; start again.")
                else:
                    data[key] = (cursor, data[key])
        return data


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: int | None
    prev_cursor: int | None


def filtered_jobs(data: dict[str, Any]) -> QuerySet[Job]:
    jobs = Job.objects.all()
    if data.get("kind"):
        jobs = jobs.filter(kind=data["kind"])
    if data.get("status") == ACTIVE:
        jobs = jobs.filter(status__in=WAITING)
    elif data.get("status"):
        jobs = jobs.filter(status=data["status"])
    if data.get("user") is not None:
        jobs = jobs.filter(created_by=data["user"])
    return jobs


def job_page(data: dict[str, Any], *, size: int = PAGE_SIZE) -> JobPage:
    """One page of jobs, newest first, paged by (created_at, id): a fixed few queries however
    deep the page is."""
    jobs = filtered_jobs(data).select_related("created_by")
    jobs = jobs.defer("params", "artifacts", "log_tail", "resume_point")
    backwards = data.get("before") is not None and data.get("after") is None
    if data.get("after") is not None:
        created, pk = data["after"]
        jobs = jobs.filter(Q(created_at__lt=created) | Q(created_at=created, pk__lt=pk))
    elif backwards:
        created, pk = data["before"]
        jobs = jobs.filter(Q(created_at__gt=created) | Q(created_at=created, pk__gt=pk))
    order = ("created_at", "id") if backwards else ("-created_at", "-id")
    rows = list(jobs.order_by(*order)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    if not rows:
        return JobPage([], None, None)
    has_next = more or backwards
    has_prev = data.get("after") is not None or (backwards and more)
    return JobPage(
        jobs=rows,
        next_cursor=rows[-1].pk if has_next else None,
        prev_cursor=rows[0].pk if has_prev else None,
    )


def _run_time(job: Job, now: datetime) -> str:
    if job.started_at is None:
        return ""
    return duration_text(((job.finished_at or now) - job.started_at).total_seconds())


@require_GET
@permission_required(*EXPORT)
def job_list(request: AuthedRequest) -> HttpResponse:
    form = JobFilterForm(request.GET)
    creators = (
        User.objects.filter(job__isnull=False)
        .distinct()
        .order_by("username")
        .values_list("username", flat=True)[:200]
    )
    context: dict[str, Any] = {"form": form, "creators": list(creators), "page": None}
    if not form.is_valid():
        return render(request, "training/job_list.html", context, status=400)
    page = job_page(form.cleaned_data)
    now = timezone.now()
    params = request.GET.copy()
    for key in ("after", "before"):
        params.pop(key, None)
    context.update(
        page=page,
        rows=[{"job": job, "run_time": _run_time(job, now)} for job in page.jobs],
        base_query=params.urlencode(),
        filtered=any(request.GET.get(key) for key in ("kind", "status", "user")),
    )
    return render(request, "training/job_list.html", context)


# --- Metrics for the curves ---------------------------------------------------------------


def _number(value: Any) -> float | int | None:
    """A value a chart can draw: finite and numeric (JSON has no NaN or Infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def metric_series(rows: list[tuple[int, dict[str, Any]]]) -> dict[str, list[float | int | None]]:
    """Column per numeric key (loss and lr first), aligned with the rows; None where a row
    lacks the key."""
    names: set[str] = set()
    for _, values in rows:
        if isinstance(values, dict):
            names.update(k for k, v in values.items() if k != "step" and _number(v) is not None)
    order = [n for n in DEFAULT_SERIES if n in names] + sorted(names - set(DEFAULT_SERIES))
    return {
        name: [
            _number(values.get(name)) if isinstance(values, dict) else None for _, values in rows
        ]
        for name in order
    }


def _json_error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


AFTER = re.compile(r"\d{1,10}")


@require_GET
@permission_required(*EXPORT)
def job_metrics(request: AuthedRequest, job_id: int) -> JsonResponse:
    """A run's metrics after step ?after=N (all of them without it), at most MAX_POINTS steps
    per answer; `more` says to ask again at once."""
    raw = request.GET.get("after", "")
    after = -1
    if raw != "":
        if not AFTER.fullmatch(raw) or int(raw) > MAX_INT:
            return _json_error(f"after must be a step number from 0 to {MAX_INT}.", 400)
        after = int(raw)
    # The status is read before the metrics: a run writes its last metrics before it
    # finishes, so an answer that says "finished" holds them all.
    status = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
    if status is None:
        return _json_error(f"There is no job #{job_id}.", 404)
    rows = list(
        JobMetric.objects.filter(job_id=job_id, step__gt=after)
        .order_by("step")
        .values_list("step", "values")[: MAX_POINTS + 1]
    )
    more = len(rows) > MAX_POINTS
    rows = rows[:MAX_POINTS]
    finished = status in {Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED}
    response = JsonResponse(
        {
            "job": job_id,
            "status": status,
            "finished": finished,
            "steps": [step for step, _ in rows],
            "series": metric_series(rows),
            "last_step": rows[-1][0] if rows else (after if after >= 0 else None),
            "more": more,
        }
    )
    response["Cache-Control"] = "no-store"
    return response


# --- Two runs side by side ----------------------------------------------------------------


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for key in sorted(value, key=str):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif prefix:
        out[prefix] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _summary(job: Job, now: datetime) -> dict[str, str]:
    return {
        "kind": job.get_kind_display(),
        "status": str(job.status),
        "queue": str(job.queue),
        "created by": job.created_by.get_username() if job.created_by else "",
        "created": job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "run time": _run_time(job, now),
        "attempts": str(job.attempts),
    }


def _last_metrics(job: Job) -> dict[str, Any]:
    last = JobMetric.objects.filter(job=job).order_by("-step").first()
    if last is None:
        return {}
    values = last.values if isinstance(last.values, dict) else {}
    return {"step": last.step, **{k: v for k, v in values.items() if k != "step"}}


def compare_rows(a: Job, b: Job) -> list[dict[str, Any]]:
    """Sections of (key, value for a, value for b, whether they differ)."""
    now = timezone.now()
    sections = []
    for title, left, right in (
        ("Job", _summary(a, now), _summary(b, now)),
        ("Parameters", a.params, b.params),
        ("Results", a.artifacts, b.artifacts),
        ("Last logged metrics", _last_metrics(a), _last_metrics(b)),
    ):
        flat_a: dict[str, str] = {}
        flat_b: dict[str, str] = {}
        _flatten(left, "", flat_a)
        _flatten(right, "", flat_b)
        keys = list(dict.fromkeys([*flat_a, *flat_b]))
        rows = [
            {
                "key": key,
                "a": flat_a.get(key),
                "b": flat_b.get(key),
                "differs": flat_a.get(key) != flat_b.get(key),
            }
            for key in keys
        ]
        sections.append({"title": title, "rows": rows})
    return sections


class CompareForm(forms.Form):
    a = forms.IntegerField(min_value=1, max_value=MAX_INT, label="First job")
    b = forms.IntegerField(min_value=1, max_value=MAX_INT, label="Second job")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("a") is not None and data.get("a") == data.get("b"):
            raise forms.ValidationError("Choose two different jobs.")
        return data


@require_GET
@permission_required(*EXPORT)
def job_compare(request: AuthedRequest) -> HttpResponse:
    """Two runs: their curves on one chart, their settings and results side by side. The
    jobs list sends ?job=X&job=Y (two checked boxes); that is redirected to ?a=&b=."""
    template = "training/job_compare.html"
    picked = request.GET.getlist("job")
    if picked and "a" not in request.GET and "b" not in request.GET:
        checked = parse_ids(picked)
        if checked is not None and len(checked) == 2:
            # The older run first: it is usually the baseline the newer one is read against.
            first, second = sorted(checked)
            return redirect(f"{reverse('job_compare')}?a={first}&b={second}")
        message = (
            f"Check exactly two jobs to compare ({len(picked)} checked)."
            if len(picked) != 2
            else "Jobs are named by their numbers: check two jobs in the list."
        )
        return render(request, template, {"form": CompareForm(), "message": message}, status=400)
    if "a" not in request.GET and "b" not in request.GET:
        return render(request, template, {"form": CompareForm()})
    form = CompareForm(request.GET)
    if not form.is_valid():
        return render(request, template, {"form": form}, status=400)
    ids = [form.cleaned_data["a"], form.cleaned_data["b"]]
    found = {job.pk: job for job in Job.objects.select_related("created_by").filter(pk__in=ids)}
    missing = [pk for pk in ids if pk not in found]
    if missing:
        message = " ".join(f"There is no job #{pk}." for pk in missing)
        return render(request, template, {"form": form, "message": message}, status=404)
    a, b = found[ids[0]], found[ids[1]]
    context = {"form": form, "a": a, "b": b, "sections": compare_rows(a, b)}
    return render(request, template, context)
