"""The filter page: start a filter job, see the active filter's score histogram, the threshold
for a keep-rate with the labelled set's precision and recall there, and choose the active
filter (which brings its scores to the pool)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from core.access import MODELS, permission_required
from core.http import AuthedRequest
from training import filter_selectors, filter_services
from training.filter_forms import FilterJobForm, KeepRateForm
from training.model_selectors import gpu_worker_missing
from training.models import Job, TrainedModel

NOT_QUEUED = "The job was not started: the job queue cannot be reached."


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _scores_context(request: AuthedRequest, labels: filter_selectors.LabelledSet) -> dict[str, Any]:
    active = filter_selectors.active_filter()
    keep_form = KeepRateForm(request.GET if "keep" in request.GET else None)
    context: dict[str, Any] = {"active": active, "keep_form": keep_form}
    if active is None:
        return context
    bins = filter_selectors.score_histogram(active)
    # Without ?keep= the figures are shown for the field's starting value.
    if keep_form.is_bound:
        keep = keep_form.cleaned_data["keep"] if keep_form.is_valid() else None
    else:
        keep = float(keep_form.fields["keep"].initial)
    found = filter_selectors.keep_threshold(active, keep, labels) if keep is not None else None
    tallest = max((b.count for b in bins), default=0)
    context.update(
        bins=bins,
        tallest=tallest,
        scored=sum(b.count for b in bins),
        # What static/js/filter_histogram.js draws: bin starts, counts, the threshold.
        histogram={
            "lows": [b.low for b in bins],
            "counts": [b.count for b in bins],
            "threshold": found.threshold if found else None,
        },
        found=found,
        precision=_percent(found.precision) if found else "",
        recall=_percent(found.recall) if found else "",
    )
    return context


@require_http_methods(["GET", "POST"])
@permission_required(*MODELS)
def filter_page(request: AuthedRequest) -> HttpResponse:
    recipe, tiny, vlm = filter_selectors.filter_recipe()
    labels = filter_selectors.labelled_set()
    models = list(filter_selectors.filter_models())
    form = FilterJobForm(
        request.POST if request.method == "POST" else None,
        recipe=recipe,
        vlm=vlm,
        labels=labels,
        models=models,
    )
    if request.method == "POST" and form.is_valid():
        chosen = form.chosen_model()
        job = filter_services.filter_job_start(
            name=form.cleaned_data["name"].strip() or "interest filter",
            config=form.config,
            balance=form.cleaned_data["balance"],
            score=form.cleaned_data["score"],
            model_id=chosen.pk if chosen else None,
            activate=form.cleaned_data["activate"],
            user=request.user,
        )
        if job.status == Job.Status.FAILED:
            messages.error(request, NOT_QUEUED)
        return redirect("job_detail", job_id=job.pk)
    context = {
        "form": form,
        "tiny": tiny,
        "vlm": vlm,
        "labels": labels,
        "min_per_class": filter_selectors.MIN_LABELS_PER_CLASS,
        "models": models,
        "jobs": filter_selectors.filter_jobs_recent(),
        "gpu_warning": "" if form.is_bound else gpu_worker_missing(),
        **_scores_context(request, labels),
    }
    return render(request, "training/filter.html", context)


@require_POST
@permission_required(*MODELS)
def filter_activate(request: AuthedRequest, model_id: int) -> HttpResponse:
    model = get_object_or_404(TrainedModel, pk=model_id)
    if model.kind != TrainedModel.Kind.FILTER:
        messages.error(request, f"{model.name} is not an interest filter.")
        return redirect("filter_page")
    filter_services.filter_activate(model=model)
    messages.success(request, f"{model.name} is now the active filter; the pool shows its scores.")
    return redirect("filter_page")
