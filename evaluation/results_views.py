"""Study results pages (admins): the figures, the paper-style chart, raw answer downloads
with their data dictionary, and sending trials back to curation."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from core.access import EVALUATE, permission_required
from core.http import AuthedRequest
from evaluation import results_export
from evaluation.charts import ImageFormat, stacked_bar_chart
from evaluation.models import Study, Trial
from evaluation.results import StudyResults, study_ab_rows, study_results, trial_to_curation
from evaluation.stats import Proportion


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _share(share: Proportion) -> dict[str, object]:
    """A proportion as the page prints it; an empty total has no share to print."""
    if not share.total:
        return {"count": share.count, "share": "—", "ci": ""}
    return {
        "count": share.count,
        "share": _percent(share.share),
        "ci": f"{_percent(share.low)} to {_percent(share.high)}",
    }


def _seconds(ms: float | None) -> str:
    return "—" if ms is None else f"{ms / 1000:.1f} s"


def _context(study: Study, results: StudyResults) -> dict[str, object]:
    ab_rows = [
        {
            "baseline": row.baseline,
            "cells": [_share(row.wins), _share(row.ties), _share(row.losses)],
            "total": row.total,
        }
        for row in results.ab_rows
    ]
    participants = [
        {
            "row": row,
            "total": _seconds(row.total_ms if row.answers else None),
            "median": _seconds(row.median_ms),
            "catch": f"{row.catch.count}/{row.catch.total}" if row.catch.total else "—",
        }
        for row in results.participants
    ]
    agreement = results.agreement
    return {
        "study": study,
        "results": results,
        "ab_rows": ab_rows,
        "participants": participants,
        "position": _share(results.position),
        # The interval holding one half is what "no detectable side bias" means here.
        "position_balanced": results.position.low <= 0.5 <= results.position.high,
        "catch": _share(results.catch),
        "agreement_percent": _percent(agreement.percent_agreement),
        "agreement_alpha": (
            "undefined (it needs two such trials and more than one kind of answer)"
            if agreement.alpha is None
            else f"{agreement.alpha:.3f}"
        ),
        "columns": results_export.data_dictionary(),
    }


@require_GET
@permission_required(*EVALUATE)
def study_results_page(request: AuthedRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    return render(request, "evaluation/results.html", _context(study, study_results(study)))


def _chart(study_id: int, fmt: ImageFormat) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    title = f"{study.name}: {study.reference_method} against each baseline"
    data = stacked_bar_chart(study_ab_rows(study), fmt=fmt, title=title)
    response = HttpResponse(data, content_type="image/png" if fmt == "png" else "application/pdf")
    response["Cache-Control"] = "no-store"  # answers keep arriving while a study is open
    if fmt == "pdf":
        response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-results.pdf"'
    return response


@require_GET
@permission_required(*EVALUATE)
def study_chart_png(request: AuthedRequest, study_id: int) -> HttpResponse:
    return _chart(study_id, "png")


@require_GET
@permission_required(*EVALUATE)
def study_chart_pdf(request: AuthedRequest, study_id: int) -> HttpResponse:
    return _chart(study_id, "pdf")


@require_GET
@permission_required(*EVALUATE)
def study_answers_csv(request: AuthedRequest, study_id: int) -> StreamingHttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    response = StreamingHttpResponse(
        results_export.csv_lines(study), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-answers.csv"'
    return response


@require_GET
@permission_required(*EVALUATE)
def study_answers_json(request: AuthedRequest, study_id: int) -> StreamingHttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    response = StreamingHttpResponse(
        results_export.json_chunks(study), content_type="application/json"
    )
    response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-answers.json"'
    return response


@require_GET
@permission_required(*EVALUATE)
def study_data_dictionary(request: AuthedRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    context = {"study": study, "columns": results_export.data_dictionary()}
    return render(request, "evaluation/results_dictionary.html", context)


@require_POST
@permission_required(*EVALUATE)
def trial_send_to_curation(request: AuthedRequest, trial_id: int) -> HttpResponse:
    trial = get_object_or_404(Trial.objects.select_related("study"), pk=trial_id)
    back = reverse("study_results", args=[trial.study_id]) + "#back-to-curation"
    try:
        group = trial_to_curation(trial=trial, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect(back)
    messages.success(
        request,
        format_html(
            'Proposed the draft group <a href="{}">“{}”</a> from trial #{}.',
            reverse("group_detail", args=[group.pk]),
            group.title,
            trial.pk,
        ),
    )
    return redirect(back)
