"""Roles: who reaches the admin, who may run which command, and create_user."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from core.roles import ADMIN, ANNOTATOR, REVIEWER, role_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("role", "admin_status"),
    [(ANNOTATOR, 302), (REVIEWER, 302), (ADMIN, 200), (None, 302)],
)
def test_only_admins_reach_the_admin_site(
    make_user: Any, role: str | None, admin_status: int
) -> None:
    client = Client()
    if role is not None:
        client.force_login(make_user(f"user-{role}", role))
    response = client.get("/admin/")
    assert response.status_code == admin_status
    if admin_status == 302:
        assert "/admin/login/" in response["Location"]


def test_admins_see_jobs_and_images_but_cannot_edit_users_groups_of_permissions(
    admin_user_role: Any,
) -> None:
    client = Client()
    client.force_login(admin_user_role)
    assert client.get("/admin/training/job/").status_code == 200
    assert client.get("/admin/curation/image/").status_code == 200
    assert client.get("/admin/auth/user/").status_code == 200
    assert client.get("/admin/auth/group/add/").status_code == 403


def test_reviewers_may_review_captions_and_annotators_may_not(
    annotator: Any, reviewer: Any
) -> None:
    assert reviewer.has_perm("captions.review_caption")
    assert not annotator.has_perm("captions.review_caption")
    assert annotator.has_perm("curation.add_group")
    assert not annotator.has_perm("training.add_job")


def test_the_home_page_needs_a_login(annotator: Any) -> None:
    client = Client()
    assert client.get("/").status_code == 302
    client.force_login(annotator)
    response = client.get("/")
    assert response.status_code == 200
    assert b"Overview" in response.content


def test_create_user_takes_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, django_user_model: Any
) -> None:
    monkeypatch.setenv("RELSIM_PASSWORD", "correct-horse-battery")
    call_command("create_user", "carol", "--role", REVIEWER, stdout=StringIO())
    user = django_user_model.objects.get(username="carol")
    assert user.check_password("correct-horse-battery")
    assert role_of(user) == REVIEWER
    assert not user.is_staff


def test_create_user_rejects_a_weak_password_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, django_user_model: Any
) -> None:
    monkeypatch.setenv("RELSIM_PASSWORD", "123")
    with pytest.raises(CommandError, match="Password rejected"):
        call_command("create_user", "dave", "--role", ADMIN, stdout=StringIO())
    assert not django_user_model.objects.filter(username="dave").exists()


def test_create_user_refuses_an_unknown_role() -> None:
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("create_user", "erin", "--role", "wizard")


def test_changing_role_replaces_the_old_one(make_user: Any) -> None:
    from core.roles import assign_role

    user = make_user("frank", ADMIN)
    assert user.is_staff
    assign_role(user, ANNOTATOR)
    user.refresh_from_db()
    assert role_of(user) == ANNOTATOR
    assert not user.is_staff
