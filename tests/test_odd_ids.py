"""Ids typed into requests: a number past 64 bits, letters, a digit `int` refuses ("²") or a
zero is refused in words or found to name nothing, never a server error. SQLite raises on
such a number where PostgreSQL finds nothing, so these run on both."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group as AuthGroup
from django.contrib.auth.models import User
from django.http import QueryDict
from django.test import Client
from django.urls import reverse

from core.ids import MAX_ID, parse_id, parse_ids
from curation.models import Group
from evaluation.study_forms import AnswerInvalid, read_answer

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

HUGE = "99999999999999999999"
# Past 4,300 digits int() itself refuses the text.
ODD = [HUGE, str(MAX_ID + 1), "9" * 5000, "abc", "²", "0", "-1", "1.5", "<script>x</script>"]


def test_an_id_is_ascii_digits_a_key_can_hold() -> None:
    assert parse_id("42") == 42 and parse_id(42) == 42
    assert parse_id(str(MAX_ID)) == MAX_ID
    for value in [*ODD, "", " 4", "٤", "4" * 400, None, True, 1.0, MAX_ID + 1, -3]:
        assert parse_id(value) is None, value
    assert parse_ids(["3", "1"]) == [3, 1]
    assert parse_ids(["3", HUGE]) is None


def test_an_answer_with_a_very_long_number_is_told_the_range() -> None:
    with pytest.raises(AnswerInvalid, match="must be from 0 to 100000"):
        read_answer(QueryDict(f"position={'9' * 5000}&choice=left"))


def _handled(status: int) -> bool:
    """Answered: a page, a redirect with a message, or a refusal in words."""
    return status < 500


@pytest.mark.parametrize("odd", ODD)
def test_odd_ids_in_curation_and_review_forms_are_refused(
    admin_client: Client, admin_user_role: Any, odd: str
) -> None:
    group = Group.objects.create(title="g", created_by=admin_user_role)
    posts: list[tuple[str, dict[str, str]]] = [
        (reverse("group_add", args=[group.pk]), {"images": odd}),
        (reverse("group_add", args=[group.pk]), {"image": odd}),
        (reverse("group_reorder", args=[group.pk]), {"order": odd}),
        (reverse("label_submit"), {"image": odd, "answer": "yes"}),
        (reverse("caption_create"), {"group": odd, "text": "A {Object} on a {Object}."}),
        (reverse("caption_create"), {"image": odd, "text": "A {Object} on a {Object}."}),
        (reverse("review_bulk_approve"), {"captions": odd}),
        (reverse("study_new"), {"benchmark": odd, "name": "s"}),
    ]
    for url, data in posts:
        response = admin_client.post(url, data)
        assert _handled(response.status_code), (url, data, response.status_code)
    assert not group.members.exists()


@pytest.mark.parametrize("odd", ODD)
def test_odd_ids_in_query_strings_are_refused(admin_client: Client, odd: str) -> None:
    gets = [
        f"{reverse('pool')}?group={odd}",
        f"{reverse('study_new')}?benchmark={odd}",
        f"{reverse('job_compare')}?job={odd}&job=1",
        f"{reverse('job_compare')}?a={odd}&b=1",
        f"{reverse('relsim_score_api')}?a={odd}&b=1",
    ]
    for url in gets:
        response = admin_client.get(url)
        assert _handled(response.status_code), (url, response.status_code)


def test_a_path_id_past_64_bits_names_nothing(admin_client: Client) -> None:
    for url in (f"/groups/{HUGE}/", f"/images/{HUGE}/", f"/captions/{HUGE}/"):
        assert admin_client.get(url).status_code == 404, url


def _admin_urls() -> list[tuple[str, str]]:
    return [(model._meta.app_label, model._meta.model_name or "") for model in admin.site._registry]


@pytest.mark.parametrize(("app", "model"), _admin_urls())
def test_every_admin_add_page_refuses_an_empty_or_odd_form(
    admin_client: Client, app: str, model: str
) -> None:
    """Rows the app creates (images, participants, answers, runs) cannot be added by hand;
    where the admin may add, a form of odd values comes back with errors."""
    url = reverse(f"admin:{app}_{model}_add")
    page = admin_client.get(url)
    assert page.status_code in (200, 403), (url, page.status_code)
    if page.status_code == 403:
        return
    names = set(re.findall(r'name="([^"]+)"', page.content.decode())) - {
        "csrfmiddlewaretoken",
        "_save",
        "_continue",
        "_addanother",
    }
    for data in [{}, *(dict.fromkeys(names, odd) for odd in (HUGE, "abc", "0", "1"))]:
        response = admin_client.post(url, data)
        assert _handled(response.status_code), (url, data, response.status_code)


def test_the_admin_refuses_group_ids_past_64_bits_for_a_user(
    admin_client: Client, admin_user_role: Any
) -> None:
    other = User.objects.create_user(username="other", password="a-long-test-password")
    url = reverse("admin:auth_user_change", args=[other.pk])
    response = admin_client.post(
        url, {"username": "other", "groups": HUGE, "date_joined_0": "2026-01-01"}
    )
    assert _handled(response.status_code)
    group = AuthGroup.objects.create(name="g")
    response = admin_client.post(
        reverse("admin:auth_group_change", args=[group.pk]), {"name": "g", "permissions": HUGE}
    )
    assert _handled(response.status_code)
    other.refresh_from_db()
    assert not other.groups.exists()
