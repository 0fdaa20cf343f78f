"""The current group is kept per user, and every way into adding to a group chooses it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from curation.intake import normalise_image
from curation.models import CurrentGroup, Group, Image
from curation.selectors import current_group
from curation.services import group_create, image_store

pytestmark = pytest.mark.django_db


def _images(png_factory: Any, count: int) -> list[Image]:
    return [image_store(normalised=normalise_image(png_factory(n))).image for n in range(count)]


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_nobody_has_a_current_group_at_first(annotator: Any) -> None:
    assert current_group(annotator) is None
    response = _client(annotator).get(reverse("pool"))
    assert b"No current group" in response.content


def test_creating_a_group_makes_it_current_for_that_user_only(
    annotator: Any, make_user: Any
) -> None:
    other = make_user("bob", role="annotator")
    _client(annotator).post(reverse("group_create"), {"title": "rings", "split": "train"})
    assert current_group(annotator) == Group.objects.get(title="rings")
    assert current_group(other) is None


def test_the_current_group_outlives_the_login_session(annotator: Any) -> None:
    group = group_create(title="stacked")
    first = _client(annotator)
    first.post(reverse("group_set_current", args=[group.pk]))
    first.logout()
    response = _client(annotator).get(reverse("pool"))
    assert response.context["current_group"] == group
    assert "Current group:" in response.content.decode()


def test_add_from_the_pool_makes_the_group_current_and_opens_the_pool(annotator: Any) -> None:
    old, new = group_create(title="old"), group_create(title="new")
    client = _client(annotator)
    client.post(reverse("group_set_current", args=[old.pk]))
    page = client.get(reverse("group_detail", args=[new.pk])).content.decode()
    assert reverse("group_pool", args=[new.pk]) in page
    assert client.get(reverse("group_pool", args=[new.pk])).status_code == 405  # changes state
    assert current_group(annotator) == old
    response = client.post(reverse("group_pool", args=[new.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("pool") + "?group=none"
    assert current_group(annotator) == new
    assert CurrentGroup.objects.count() == 1


def test_adding_to_a_group_makes_it_current(annotator: Any, png_factory: Any) -> None:
    images = _images(png_factory, 2)
    old, similar_to = group_create(title="old"), group_create(title="from find-similar")
    client = _client(annotator)
    client.post(reverse("group_set_current", args=[old.pk]))
    response = client.post(
        reverse("group_add", args=[similar_to.pk]),
        {"images": str(images[0].pk)},
        HTTP_HX_REQUEST="true",
    )
    assert response["HX-Trigger"] == "group-changed"
    assert current_group(annotator) == similar_to
    client.post(reverse("group_add", args=[old.pk]), {"images": str(images[1].pk)})
    assert current_group(annotator) == old


def test_the_group_page_says_which_group_is_current(annotator: Any) -> None:
    current, other = group_create(title="current one"), group_create(title="other one")
    client = _client(annotator)
    client.post(reverse("group_set_current", args=[current.pk]))
    assert client.get(reverse("group_detail", args=[current.pk])).context["is_current"]
    assert not client.get(reverse("group_detail", args=[other.pk])).context["is_current"]


def test_deleting_the_current_group_leaves_no_current_group(annotator: Any) -> None:
    group = group_create(title="short-lived")
    _client(annotator).post(reverse("group_set_current", args=[group.pk]))
    group.delete()
    assert current_group(annotator) is None


def test_htmx_asks_for_the_members_alone(annotator: Any, png_factory: Any) -> None:
    images = _images(png_factory, 2)
    group = group_create(title="pair", images=images)
    response = _client(annotator).get(
        reverse("group_detail", args=[group.pk]),
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="members-panel",
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="members-panel"')
    assert "Members (2 of at most" in body
    assert "Find similar" not in body and "<html" not in body
    assert [int(i) for i in _member_ids(body)] == [image.pk for image in images]


def _member_ids(body: str) -> list[str]:
    return re.findall(r'<li class="member" data-id="(\d+)"', body)
