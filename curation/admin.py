"""Admin pages for images, import batches, interest labels and groups."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from curation.models import Group, GroupMember, Image, ImportBatch, InterestLabel


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin[Image]):
    list_display = ["preview", "source_name", "width", "height", "original_format", "created_at"]
    list_filter = ["original_format", "batch__kind", "created_at"]
    search_fields = ["sha256", "md5", "phash", "source_name", "source_url"]
    readonly_fields = [
        "preview",
        "sha256",
        "md5",
        "phash",
        "width",
        "height",
        "original_format",
        "file",
        "thumbnail",
        "batch",
        "normalisation_notes",
        "created_by",
        "created_at",
    ]
    list_select_related = ["batch"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # Images come in through the import page, which checks and stores them.

    @admin.display(description="image")
    def preview(self, obj: Image) -> str:
        if not obj.thumbnail:
            return "-"
        return format_html('<img src="{}" alt="" height="64">', obj.thumbnail.url)


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin[ImportBatch]):
    list_display = ["id", "kind", "source", "created_by", "created_at"]
    list_filter = ["kind", "created_at"]
    search_fields = ["source"]
    readonly_fields = ["kind", "source", "report", "created_by", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # A batch is what an import wrote.


@admin.register(InterestLabel)
class InterestLabelAdmin(admin.ModelAdmin[InterestLabel]):
    list_display = ["image", "annotator", "interesting", "updated_at"]
    list_filter = ["interesting", "annotator"]
    search_fields = ["image__sha256", "image__source_name", "annotator__username"]
    raw_id_fields = ["image"]
    list_select_related = ["image", "annotator"]


class GroupMemberInline(admin.TabularInline[GroupMember, Group]):
    model = GroupMember
    raw_id_fields = ["image"]
    extra = 0
    ordering = ["position"]


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin[Group]):
    list_display = ["title", "split", "state", "member_count", "created_by", "updated_at"]
    list_filter = ["split", "state", "created_at"]
    search_fields = ["title", "notes", "captions__text"]
    inlines = [GroupMemberInline]
    readonly_fields = ["import_key", "created_by", "created_at", "updated_at"]

    @admin.display(description="images")
    def member_count(self, obj: Group) -> int:
        return obj.members.count()
