from __future__ import annotations

from django.urls import path

from captions import audit_views, views

urlpatterns = [
    path("groups/<int:group_id>/caption/", views.edit_group_caption, name="edit_group_caption"),
    path("images/<int:image_id>/caption/", views.edit_image_caption, name="edit_image_caption"),
    path("captions/lint/", views.lint, name="caption_lint"),
    path("captions/returned/", views.returned_captions, name="returned_captions"),
    path("captions/new/", views.create_caption, name="caption_create"),
    path("captions/<int:caption_id>/save/", views.save_caption, name="caption_save"),
    path("captions/<int:caption_id>/presence/", views.presence, name="caption_presence"),
    path("captions/batches/", audit_views.batch_list, name="batch_list"),
    path("captions/batches/<int:job_id>/", audit_views.batch_detail, name="batch_detail"),
    path("captions/batches/<int:job_id>/sample/", audit_views.batch_draw, name="batch_draw"),
    path("captions/batches/<int:job_id>/accept/", audit_views.batch_accept, name="batch_accept"),
    path(
        "captions/batches/<int:job_id>/send-back/",
        audit_views.batch_send_back,
        name="batch_send_back",
    ),
    path("review/", views.review_queue, name="review_queue"),
    path("review/bulk/", views.review_bulk_approve, name="review_bulk_approve"),
    path("review/<int:caption_id>/", views.review_detail, name="review_detail"),
    path("review/<int:caption_id>/approve/", views.review_approve, name="review_approve"),
    path("review/<int:caption_id>/reject/", views.review_reject, name="review_reject"),
]
