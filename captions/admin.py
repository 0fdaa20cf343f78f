"""Admin pages for captions and their history."""

from __future__ import annotations

from django.contrib import admin

from captions.models import Caption, CaptionRevision


class CaptionRevisionInline(admin.TabularInline[CaptionRevision, Caption]):
    model = CaptionRevision
    extra = 0
    can_delete = False
    readonly_fields = [
        "version",
        "action",
        "actor",
        "text_before",
        "text_after",
        "status_after",
        "reason",
        "created_at",
    ]

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Caption)
class CaptionAdmin(admin.ModelAdmin[Caption]):
    list_display = ["text", "status", "source", "group", "image", "split", "version", "updated_at"]
    list_filter = ["status", "source", "split", "model_name", "prompt_version"]
    search_fields = ["text", "group__title", "image__sha256", "image__md5"]
    raw_id_fields = ["group", "image"]
    readonly_fields = ["version", "author", "reviewer", "reviewed_at", "created_at", "updated_at"]
    inlines = [CaptionRevisionInline]
    list_select_related = ["group", "image"]


@admin.register(CaptionRevision)
class CaptionRevisionAdmin(admin.ModelAdmin[CaptionRevision]):
    list_display = ["caption", "version", "action", "actor", "created_at"]
    list_filter = ["action"]
    search_fields = ["text_before", "text_after", "reason"]
    readonly_fields = [f.name for f in CaptionRevision._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False
