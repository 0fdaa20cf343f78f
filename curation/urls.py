from __future__ import annotations

from django.urls import path

from curation import views

urlpatterns = [
    path("pool/", views.pool, name="pool"),
    path("images/<int:image_id>/", views.image_detail, name="image_detail"),
    path("images/<int:image_id>/label/", views.image_label, name="image_label"),
    path("label/", views.label_queue, name="label_queue"),
    path("label/answer/", views.label_submit, name="label_submit"),
    path("label/undo/", views.label_undo, name="label_undo"),
    path("label/agreement/", views.agreement, name="agreement"),
    path("groups/", views.group_list, name="group_list"),
    path("groups/new/", views.group_create, name="group_create"),
    path("groups/<int:group_id>/", views.group_detail, name="group_detail"),
    path("groups/<int:group_id>/edit/", views.group_update, name="group_update"),
    path("groups/<int:group_id>/state/", views.group_state, name="group_state"),
    path("groups/<int:group_id>/add/", views.group_add, name="group_add"),
    path("groups/<int:group_id>/remove/<int:image_id>/", views.group_remove, name="group_remove"),
    path("groups/<int:group_id>/order/", views.group_reorder, name="group_reorder"),
    path(
        "groups/<int:group_id>/negative/<int:image_id>/",
        views.group_negative,
        name="group_negative",
    ),
    path("groups/<int:group_id>/similar/", views.group_similar, name="group_similar"),
    path("groups/<int:group_id>/current/", views.group_set_current, name="group_set_current"),
    path("groups/<int:group_id>/pool/", views.group_pool, name="group_pool"),
]
