"""The participant's pages (no account: a study link). Included ahead of every other app's
patterns: an answer is the study's hottest request, and each pattern tried before its own
costs it time."""

from __future__ import annotations

from django.urls import URLPattern, path

from evaluation import participant_views

urlpatterns: list[URLPattern] = [
    # First: the answer is the request made most often.
    path(
        "p/<str:token>/answer/",
        participant_views.participant_answer,
        name="participant_answer",
    ),
    path("<str:slug>/", participant_views.study_entry, name="study_entry"),
    path(
        "p/<str:token>/start/",
        participant_views.participant_instructions,
        name="participant_instructions",
    ),
    path("p/<str:token>/", participant_views.participant_trial, name="participant_trial"),
    path("p/<str:token>/done/", participant_views.participant_done, name="participant_done"),
    path(
        "p/<str:token>/img/<int:position>/<str:slot>.png",
        participant_views.participant_image,
        name="participant_image",
    ),
]
