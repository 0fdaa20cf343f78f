from __future__ import annotations

from django.urls import path

from training import views

urlpatterns = [
    path("export/", views.export_page, name="export"),
    path("imports/", views.import_page, name="imports"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/retry/", views.job_retry, name="job_retry"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("exports/<int:job_id>/download/", views.export_download, name="export_download"),
]
