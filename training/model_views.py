"""Model pages: the trained and imported models with their indexes, choosing the active one,
importing a checkpoint folder, starting relsim training and index builds, and the baseline
indexes with the form that builds one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.access import MODELS, permission_required
from core.http import AuthedRequest
from training import filter_services, model_jobs, model_selectors, model_services
from training.model_forms import (
    BaselineIndexForm,
    EmbedIndexForm,
    ImportModelForm,
    TrainRelsimForm,
)
from training.models import Job, TrainedModel
from training.runners import import_roots

NOT_QUEUED = "The job was not started: the job queue cannot be reached."


def _metric_items(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """A model's final metrics as a person reads them: loss first, numbers shortened."""
    keys = sorted(metrics, key=lambda key: (key != "loss", key != "step", key))
    return [
        (key, f"{metrics[key]:.4g}" if isinstance(metrics[key], float) else str(metrics[key]))
        for key in keys
    ]


def _list_page(request: AuthedRequest, import_form: ImportModelForm) -> HttpResponse:
    models = [
        {
            "model": model,
            "metrics": _metric_items(model.metrics),
            "snapshot": Path(model.snapshot).name if model.snapshot else "",
        }
        for model in model_selectors.models_with_indexes()
    ]
    choices = model_selectors.baseline_choices()
    context = {
        "models": models,
        "import_form": import_form,
        "embed_form": EmbedIndexForm(),
        "baseline_indexes": model_selectors.baseline_indexes(),
        "baseline_form": BaselineIndexForm(choices=choices),
        "baseline_choices": choices,
        "baseline_stand_ins": any(choice.stand_in for choice in choices),
        "import_roots": import_roots(),
        "jobs": model_selectors.model_jobs_recent(),
        "gpu_warning": model_selectors.gpu_worker_missing(),
    }
    return render(request, "training/models.html", context)


@require_GET
@permission_required(*MODELS)
def model_list(request: AuthedRequest) -> HttpResponse:
    return _list_page(request, ImportModelForm())


@require_POST
@permission_required(*MODELS)
def model_import(request: AuthedRequest) -> HttpResponse:
    form = ImportModelForm(request.POST)
    if not form.is_valid():
        return _list_page(request, form)
    model = model_services.model_import(
        folder=form.cleaned_data["path"],
        name=form.cleaned_data["name"].strip(),
        base_vlm=form.base_vlm,
        user=request.user,
        activate=form.cleaned_data["activate"],
    )
    messages.success(request, f"Imported {model.folder} as model #{model.pk} ({model.name}).")
    return redirect("model_list")


@require_POST
@permission_required(*MODELS)
def model_activate(request: AuthedRequest, model_id: int) -> HttpResponse:
    model = get_object_or_404(TrainedModel, pk=model_id)
    if model.kind == TrainedModel.Kind.FILTER:
        filter_services.filter_activate(model=model)  # the pool's scores follow the filter
    else:
        model_jobs.model_activate(model=model)
    messages.success(request, f"{model.name} is now the active {model.get_kind_display()} model.")
    return redirect("model_list")


@require_http_methods(["GET", "POST"])
@permission_required(*MODELS)
def train_relsim(request: AuthedRequest) -> HttpResponse:
    recipe = model_selectors.training_recipe()
    form = TrainRelsimForm(
        request.POST if request.method == "POST" else None,
        recipe=recipe,
        exports=list(model_selectors.snapshot_exports()),
    )
    if request.method == "POST" and form.is_valid():
        job = model_services.relsim_training_start(
            name=form.cleaned_data["name"].strip(),
            snapshot_job=form.snapshot_job(),
            config=form.config,
            gpus=form.cleaned_data["gpus"],
            activate=form.cleaned_data["activate"],
            user=request.user,
        )
        if job.status == Job.Status.FAILED:
            messages.error(request, NOT_QUEUED)
        return redirect("job_detail", job_id=job.pk)
    context = {
        "form": form,
        "recipe": recipe,
        "gpu_warning": "" if form.is_bound else model_selectors.gpu_worker_missing(),
    }
    return render(request, "training/train_relsim.html", context)


@require_POST
@permission_required(*MODELS)
def embed_index(request: AuthedRequest, model_id: int) -> HttpResponse:
    model = get_object_or_404(TrainedModel, pk=model_id, kind=TrainedModel.Kind.RELSIM)
    form = EmbedIndexForm(request.POST)
    if not Path(model.folder).is_dir():
        messages.error(request, f"No index was started: the folder {model.folder} is missing.")
        return redirect("model_list")
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, f"No index was started: {error}")
        return redirect("model_list")
    job = model_services.index_build_start(
        model=model, batch_size=form.cleaned_data["batch_size"], user=request.user
    )
    if job.status == Job.Status.FAILED:
        messages.error(request, NOT_QUEUED)
    return redirect("job_detail", job_id=job.pk)


@require_POST
@permission_required(*MODELS)
def baseline_index_build(request: AuthedRequest) -> HttpResponse:
    form = BaselineIndexForm(request.POST, choices=model_selectors.baseline_choices())
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, f"No index was started: {error}")
        return redirect("model_list")
    job = model_services.baseline_index_start(
        baseline=form.cleaned_data["baseline"],
        full=form.cleaned_data["full"],
        batch_size=form.cleaned_data["batch_size"],
        user=request.user,
    )
    if job.status == Job.Status.FAILED:
        messages.error(request, NOT_QUEUED)
    return redirect("job_detail", job_id=job.pk)
