"""Evaluation pages: benchmark and judge runs and studies (admins), the participant flow
(no account: a study link), and results."""

from __future__ import annotations

from django.urls import URLPattern, path

from evaluation import (
    benchmark_views,
    judge_views,
    results_views,
    study_views,
)

urlpatterns: list[URLPattern] = [
    # Benchmark and judge runs (admins)
    path("evaluation/benchmarks/", benchmark_views.benchmark_list, name="benchmark_list"),
    path("evaluation/benchmarks/new/", benchmark_views.benchmark_new, name="benchmark_new"),
    path(
        "evaluation/benchmarks/<int:run_id>/",
        benchmark_views.benchmark_detail,
        name="benchmark_detail",
    ),
    path("evaluation/benchmarks/<int:run_id>/judge/", judge_views.judge_new, name="judge_new"),
    path("evaluation/judge/<int:judge_id>/", judge_views.judge_detail, name="judge_detail"),
    path(
        "evaluation/judge/<int:judge_id>/resume/",
        judge_views.judge_resume_view,
        name="judge_resume",
    ),
    # Studies (admins)
    path("evaluation/", study_views.evaluation_home, name="evaluation_home"),
    path("evaluation/studies/new/", study_views.study_new, name="study_new"),
    path("evaluation/studies/<int:study_id>/", study_views.study_detail, name="study_detail"),
    path("evaluation/studies/<int:study_id>/open/", study_views.study_open, name="study_open"),
    path(
        "evaluation/studies/<int:study_id>/text/",
        study_views.study_text_new,
        name="study_text_new",
    ),
    path(
        "evaluation/studies/<int:study_id>/preview/",
        study_views.study_preview,
        name="study_preview",
    ),
    path(
        "evaluation/studies/<int:study_id>/preview/<int:trial_id>/<str:slot>.png",
        study_views.study_preview_image,
        name="study_preview_image",
    ),
    path(
        "evaluation/participants/<int:participant_id>/delete/",
        study_views.participant_data_delete,
        name="participant_data_delete",
    ),
    # Results (admins)
    path(
        "evaluation/studies/<int:study_id>/results/",
        results_views.study_results_page,
        name="study_results",
    ),
    path(
        "evaluation/studies/<int:study_id>/results.png",
        results_views.study_chart_png,
        name="study_chart_png",
    ),
    path(
        "evaluation/studies/<int:study_id>/results.pdf",
        results_views.study_chart_pdf,
        name="study_chart_pdf",
    ),
    path(
        "evaluation/studies/<int:study_id>/answers.csv",
        results_views.study_answers_csv,
        name="study_answers_csv",
    ),
    path(
        "evaluation/studies/<int:study_id>/answers.json",
        results_views.study_answers_json,
        name="study_answers_json",
    ),
    path(
        "evaluation/studies/<int:study_id>/data-dictionary/",
        results_views.study_data_dictionary,
        name="study_data_dictionary",
    ),
    path(
        "evaluation/trials/<int:trial_id>/to-curation/",
        results_views.trial_send_to_curation,
        name="trial_to_curation",
    ),
    path(
        "evaluation/participants/<int:participant_id>/exclude/",
        study_views.participant_exclude,
        name="participant_exclude",
    ),
]
