"""Admin pages of the evaluation app: studies, participants (with deleting a participant's
data on request) and their answers, read-only where a change would rewrite results."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from evaluation.models import Answer, BenchmarkRun, JudgeRun, Participant, Study
from evaluation.study_services import participant_delete


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin[Study]):
    list_display = ["id", "name", "reference_method", "is_open", "created_at"]
    list_filter = ["is_open"]
    search_fields = ["name"]
    readonly_fields = ["slug", "benchmark", "reference_method", "baselines", "created_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # A study is built from a benchmark run on its own page.


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin[Participant]):
    list_display = ["id", "study", "platform_pid", "started_at", "finished_at", "excluded"]
    list_filter = ["study", "excluded"]
    search_fields = ["platform_pid", "platform_session_id"]
    readonly_fields = [
        "study",
        "token",
        "platform_pid",
        "platform_study_id",
        "platform_session_id",
        "text",
        "viewport",
        "started_at",
        "finished_at",
    ]
    actions = ["delete_data"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # Participants arrive through their study's link.

    @admin.action(description="Delete the selected participants' data (on their request)")
    def delete_data(self, request: HttpRequest, queryset: QuerySet[Participant]) -> None:
        chosen = list(queryset)
        answers = sum(participant_delete(participant=p)["answers"] for p in chosen)
        self.message_user(
            request,
            f"Deleted {len(chosen)} participants' data and {answers} answers.",
            messages.SUCCESS,
        )


@admin.register(Answer)
class AnswerAdmin(admin.ModelAdmin[Answer]):
    list_display = ["id", "participant", "trial", "choice", "preferred", "response_ms"]
    list_filter = ["choice"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # Answers come only from participants.

    def has_change_permission(self, request: HttpRequest, obj: Answer | None = None) -> bool:
        return False  # an answer is what a person said: never edited afterwards


@admin.register(BenchmarkRun)
class BenchmarkRunAdmin(admin.ModelAdmin[BenchmarkRun]):
    list_display = ["id", "name", "created_at", "finished_at"]
    readonly_fields = ["job", "params", "methods", "metrics", "database", "finished_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # A benchmark run is a job's result.


@admin.register(JudgeRun)
class JudgeRunAdmin(admin.ModelAdmin[JudgeRun]):
    list_display = ["id", "benchmark", "model_name", "created_at"]
    readonly_fields = ["benchmark", "job", "endpoint", "model_name", "methods", "summary"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # A judge run is a job's result.
