"""Benchmark pages (admins): the list of benchmark and judge runs, the form that starts a
benchmark run, and a run's page with its metrics, overlap matrix and sample retrievals."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRefresh

from core.access import EVALUATE, permission_required
from core.http import AuthedRequest
from evaluation import benchmark_selectors as selectors
from evaluation.benchmark_forms import BenchmarkForm
from evaluation.benchmark_services import benchmark_start
from evaluation.models import BenchmarkRun
from training.models import Job

NOT_QUEUED = "The job was not started: the job queue cannot be reached."


def _figure(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "—"


@require_GET
@permission_required(*EVALUATE)
def benchmark_list(request: AuthedRequest) -> HttpResponse:
    context = {
        "runs": selectors.benchmark_runs()[:100],
        "judge_runs": selectors.judge_runs()[:100],
    }
    return render(request, "evaluation/benchmark_list.html", context)


@require_http_methods(["GET", "POST"])
@permission_required(*EVALUATE)
def benchmark_new(request: AuthedRequest) -> HttpResponse:
    test_available = len(selectors.test_image_ids())
    form = BenchmarkForm(
        request.POST if request.method == "POST" else None,
        methods=selectors.available_methods(),
        test_available=test_available,
        distractors_available=len(selectors.distractor_ids()),
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        run = benchmark_start(
            name=data["name"].strip(),
            methods=form.chosen_methods(),
            n_test=data["n_test"],
            n_distractors=data["n_distractors"],
            n_queries=data["n_queries"],
            k=data["k"],
            seed=data["seed"],
            user=request.user,
        )
        if run.job is not None and run.job.status == Job.Status.FAILED:
            messages.error(request, NOT_QUEUED)
        return redirect("benchmark_detail", run_id=run.pk)
    context = {"form": form, "no_test_images": test_available == 0}
    return render(request, "evaluation/benchmark_new.html", context)


def _study_url(run: BenchmarkRun) -> str:
    # The study pages come from another part of the app; a plain path until they exist.
    try:
        base = reverse("study_new")
    except NoReverseMatch:
        base = "/evaluation/studies/new/"
    return f"{base}?benchmark={run.pk}"


def _method_rows(run: BenchmarkRun) -> list[dict[str, Any]]:
    figures = (run.metrics or {}).get("methods") or {}
    rows = []
    for key, info in run.methods.items():
        entry = figures.get(key) or {}
        rows.append(
            {
                "key": key,
                "label": info.get("label") or key,
                "index": info.get("index"),
                "p1": _figure(entry.get("precision_at_1")),
                "map": _figure(entry.get("map")),
                "recall": _figure(entry.get("recall_at_k")),
                "cosine": _figure(entry.get("mean_top1_cosine")),
                "scored": entry.get("queries_scored"),
            }
        )
    return rows


def _overlap_rows(run: BenchmarkRun) -> list[dict[str, Any]]:
    matrix = (run.metrics or {}).get("overlap") or {}
    keys = [key for key in run.methods if key in matrix]
    return [
        {"key": a, "cells": [_figure((matrix.get(a) or {}).get(b), 2) for b in keys]} for a in keys
    ]


def _thumb(image: Any) -> str:
    return image.thumbnail.url if image is not None and image.thumbnail else ""


def _samples(run: BenchmarkRun) -> list[dict[str, Any]]:
    rows = []
    for sample in selectors.sample_queries(run):
        rows.append(
            {
                "position": sample.position,
                "query": {"pk": sample.image.pk, "thumb": _thumb(sample.image)},
                "methods": [
                    {
                        "key": key,
                        "hits": [
                            {
                                "pk": image.pk if image is not None else None,
                                "thumb": _thumb(image),
                                "score": f"{score:.3f}",
                            }
                            for image, score in sample.hits.get(key, [])
                        ],
                    }
                    for key in run.methods
                ],
            }
        )
    return rows


@require_GET
@permission_required(*EVALUATE)
def benchmark_detail(request: AuthedRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(BenchmarkRun.objects.select_related("job", "created_by"), pk=run_id)
    if request.htmx:
        # The status card polls while the job runs; once it ends the whole page reloads.
        if run.is_complete or (run.job is not None and run.job.is_finished):
            return HttpResponseClientRefresh()
        return render(request, "evaluation/benchmark_detail.html#status", {"run": run})
    metrics = run.metrics or {}
    database = metrics.get("database") or (run.params or {}).get("database") or {}
    context = {
        "run": run,
        "job": run.job,
        "params": run.params,
        "database": database,
        "metrics": metrics,
        "method_rows": _method_rows(run),
        "overlap_keys": [row["key"] for row in _overlap_rows(run)],
        "overlap_rows": _overlap_rows(run),
        "samples": _samples(run) if run.is_complete else [],
        "judge_runs": run.judge_runs.select_related("job"),
        "study_url": _study_url(run),
    }
    return render(request, "evaluation/benchmark_detail.html", context)
