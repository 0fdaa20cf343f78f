"""Judge pages (admins): start a judge run over a benchmark run, a judge run's table in the
paper's form, and resuming a run that stopped."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from core.access import EVALUATE, permission_required
from core.http import AuthedRequest
from evaluation.judge_forms import JudgeForm, JudgeResumeForm
from evaluation.judge_services import JudgeRunBusy, judge_resume, judge_start
from evaluation.models import BenchmarkRun, JudgeRun
from training.models import Job

NOT_QUEUED = "The job was not started: the job queue cannot be reached."


# An error report never shows the key a form sent.
@sensitive_post_parameters("api_key")
@require_http_methods(["GET", "POST"])
@permission_required(*EVALUATE)
def judge_new(request: AuthedRequest, run_id: int) -> HttpResponse:
    benchmark = get_object_or_404(BenchmarkRun, pk=run_id)
    form = JudgeForm(request.POST if request.method == "POST" else None, benchmark=benchmark)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        run = judge_start(
            benchmark=benchmark,
            endpoint=data["endpoint"],
            model_name=data["model_name"].strip(),
            temperature=data["temperature"],
            methods=data["methods"],
            both_orders=data["both_orders"],
            concurrency=data["concurrency"],
            price_input_per_m=data.get("price_input_per_m"),
            price_output_per_m=data.get("price_output_per_m"),
            api_key=form.typed_key(),
            user=request.user,
        )
        if run.job is not None and run.job.status == Job.Status.FAILED:
            messages.error(request, NOT_QUEUED)
        return redirect("judge_detail", judge_id=run.pk)
    return render(request, "evaluation/judge_new.html", {"form": form, "benchmark": benchmark})


def _score(entry: dict[str, Any]) -> str:
    if entry.get("mean") is None:
        return "—"
    return f"{entry['mean']:.2f} [{entry['low']:.2f}, {entry['high']:.2f}]"


def _rows(run: JudgeRun) -> list[dict[str, Any]]:
    """One row per method, ascending by mean score like the paper's table; methods without
    a valid score last."""
    methods = (run.summary or {}).get("methods") or {}
    rows = []
    for key in run.methods:
        entry = methods.get(key) or {}
        orders = entry.get("orders") or {}
        rows.append(
            {
                "key": key,
                "label": entry.get("label") or run.benchmark.methods.get(key, {}).get("label", key),
                "mean": entry.get("mean"),
                "score": _score(entry),
                "valid": entry.get("valid", 0),
                "refused": entry.get("refused", 0),
                "bad_replies": entry.get("bad_replies", 0),
                "errors": entry.get("errors", 0),
                "query_first": (orders.get("query_first") or {}).get("mean"),
                "candidate_first": (orders.get("candidate_first") or {}).get("mean"),
                "bias": entry.get("position_bias"),
            }
        )
    rows.sort(key=lambda row: (row["mean"] is None, row["mean"] or 0.0))
    return rows


@require_GET
@permission_required(*EVALUATE)
def judge_detail(request: AuthedRequest, judge_id: int) -> HttpResponse:
    run = get_object_or_404(JudgeRun.objects.select_related("benchmark", "job"), pk=judge_id)
    running = run.job is not None and not run.job.is_finished
    if request.htmx:
        if not running:
            return HttpResponseClientRefresh()
        return render(request, "evaluation/judge_detail.html#status", {"run": run})
    summary = run.summary or {}
    context = {
        "run": run,
        "job": run.job,
        "running": running,
        "summary": summary,
        "settings_used": summary.get("settings") or {},
        "rows": _rows(run),
        "resume_form": None if running else JudgeResumeForm(),
    }
    return render(request, "evaluation/judge_detail.html", context)


@sensitive_post_parameters("api_key")
@require_POST
@permission_required(*EVALUATE)
def judge_resume_view(request: AuthedRequest, judge_id: int) -> HttpResponse:
    run = get_object_or_404(JudgeRun.objects.select_related("benchmark", "job"), pk=judge_id)
    form = JudgeResumeForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, f"Not resumed: {error}")
        return redirect("judge_detail", judge_id=run.pk)
    try:
        run = judge_resume(
            run=run,
            api_key=form.typed_key(),
            concurrency=form.cleaned_data.get("concurrency"),
            user=request.user,
        )
    except JudgeRunBusy as exc:
        messages.error(request, f"Not resumed: {exc}.")
        return redirect("judge_detail", judge_id=run.pk)
    if run.job is not None and run.job.status == Job.Status.FAILED:
        messages.error(request, NOT_QUEUED)
    else:
        messages.success(request, "Resumed: the new job asks only the pairs without a verdict.")
    return redirect("judge_detail", judge_id=run.pk)
