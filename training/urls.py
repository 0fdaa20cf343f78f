from __future__ import annotations

from django.urls import path

from training import caption_views, filter_views, job_views, model_views, search_views, views

urlpatterns = [
    path("export/", views.export_page, name="export"),
    path("imports/", views.import_page, name="imports"),
    path("jobs/", job_views.job_list, name="job_list"),
    path("jobs/compare/", job_views.job_compare, name="job_compare"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/metrics.json", job_views.job_metrics, name="job_metrics"),
    path("jobs/<int:job_id>/retry/", views.job_retry, name="job_retry"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("exports/<int:job_id>/download/", views.export_download, name="export_download"),
    path("models/", model_views.model_list, name="model_list"),
    path("models/import/", model_views.model_import, name="model_import"),
    path("models/train-relsim/", model_views.train_relsim, name="train_relsim"),
    path(
        "models/baseline-index/",
        model_views.baseline_index_build,
        name="baseline_index_build",
    ),
    path("models/filter/", filter_views.filter_page, name="filter_page"),
    path(
        "models/filter/<int:model_id>/activate/",
        filter_views.filter_activate,
        name="filter_activate",
    ),
    path("models/captioner/", caption_views.captioner_page, name="captioner_page"),
    path(
        "models/captioner/<int:model_id>/activate/",
        caption_views.captioner_activate,
        name="captioner_activate",
    ),
    path("models/<int:model_id>/activate/", model_views.model_activate, name="model_activate"),
    path("models/<int:model_id>/embed/", model_views.embed_index, name="embed_index"),
    path("search/", search_views.search_page, name="search"),
    path("api/relsim-score/", search_views.relsim_score_api, name="relsim_score_api"),
]
