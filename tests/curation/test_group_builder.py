"""Group builder: members, order, negatives, find-similar and warnings."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from captions.models import Caption
from captions.services import caption_create
from curation.intake import normalise_image
from curation.models import CurrentGroup, Group, GroupNegative, Image
from curation.services import group_create, image_store
from curation.similarity import PerceptualHashSimilarity, rank

pytestmark = pytest.mark.django_db


def _images(png_factory: Any, count: int, start: int = 0) -> list[Image]:
    return [
        image_store(normalised=normalise_image(png_factory(start + n))).image for n in range(count)
    ]


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _member_ids(group: Group) -> list[int]:
    return list(group.members.order_by("position").values_list("image_id", flat=True))


def test_creating_a_group_makes_it_current_and_adding_keeps_order(
    annotator: Any, png_factory: Any
) -> None:
    images = _images(png_factory, 4)
    client = _client(annotator)
    response = client.post(reverse("group_create"), {"title": "rings", "split": "test"})
    group = Group.objects.get()
    assert response["Location"] == reverse("group_detail", args=[group.pk])
    assert CurrentGroup.objects.get(user=annotator).group == group
    ids = f"{images[2].pk},{images[0].pk},{images[2].pk}"
    client.post(reverse("group_add", args=[group.pk]), {"images": ids})
    client.post(reverse("group_add", args=[group.pk]), {"image": [images[1].pk, images[0].pk]})
    assert _member_ids(group) == [images[2].pk, images[0].pk, images[1].pk]
    assert group.split == "test" and group.created_by == annotator


def test_bad_image_lists_are_refused(annotator: Any, png_factory: Any) -> None:
    group = group_create(title="g", images=_images(png_factory, 2))
    client = _client(annotator)
    response = client.post(reverse("group_add", args=[group.pk]), {"images": "1,two"})
    assert response.status_code == 400 and b"whole numbers" in response.content
    response = client.post(reverse("group_reorder", args=[group.pk]), {"order": "1"})
    assert response.status_code == 400 and b"every image" in response.content


def test_remove_and_reorder(annotator: Any, png_factory: Any) -> None:
    images = _images(png_factory, 3)
    group = group_create(title="g", images=images)
    client = _client(annotator)
    client.post(reverse("group_remove", args=[group.pk, images[1].pk]))
    assert _member_ids(group) == [images[0].pk, images[2].pk]
    assert list(group.members.values_list("position", flat=True)) == [0, 1]
    client.post(
        reverse("group_reorder", args=[group.pk]), {"order": f"{images[2].pk},{images[0].pk}"}
    )
    assert _member_ids(group) == [images[2].pk, images[0].pk]


def test_the_page_offers_move_buttons_that_reorder(annotator: Any, png_factory: Any) -> None:
    images = _images(png_factory, 3)
    group = group_create(title="g", images=images)
    rows = _client(annotator).get(reverse("group_detail", args=[group.pk])).context["member_rows"]
    _, up, down = rows[1]
    assert up == f"{images[1].pk},{images[0].pk},{images[2].pk}"
    assert down == f"{images[0].pk},{images[2].pk},{images[1].pk}"


def _copy(png: bytes, size: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.open(io.BytesIO(png)).resize((size, size)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_find_similar_uses_every_member_and_negatives(annotator: Any, png_factory: Any) -> None:
    a, b = png_factory(1, size=96), png_factory(2, size=96)
    members = [image_store(normalised=normalise_image(data)).image for data in (a, b)]
    look_alike_a = image_store(normalised=normalise_image(_copy(a, 140))).image
    look_alike_b = image_store(normalised=normalise_image(_copy(b, 140))).image
    others = _images(png_factory, 6, start=10)
    source = PerceptualHashSimilarity()

    only_a = [m.image_id for m in rank(source, positives=[members[0].pk], k=3)]
    both = [m.image_id for m in rank(source, positives=[m.pk for m in members], k=3)]
    assert only_a[0] == look_alike_a.pk
    assert {look_alike_a.pk, look_alike_b.pk} <= set(both[:2])
    pushed = rank(source, positives=[m.pk for m in members], negatives=[look_alike_b.pk], k=8)
    assert look_alike_b.pk not in [m.image_id for m in pushed]
    assert others

    group = group_create(title="g", images=members)
    client = _client(annotator)
    client.post(reverse("group_negative", args=[group.pk, look_alike_b.pk]), {"negative": "1"})
    assert GroupNegative.objects.filter(group=group, image=look_alike_b).exists()
    response = client.get(reverse("group_similar", args=[group.pk]))
    body = response.content.decode()
    shown = [int(pk) for pk in re.findall(r'<li class="tile" data-id="(\d+)"', body)]
    assert shown[0] == look_alike_a.pk and look_alike_b.pk not in shown
    assert "perceptual hash" in body


def test_not_this_from_the_panel_answers_with_the_refreshed_panel(
    annotator: Any, png_factory: Any
) -> None:
    members = _images(png_factory, 2)
    others = _images(png_factory, 3, start=10)
    group = group_create(title="g", images=members)
    response = _client(annotator).post(
        reverse("group_negative", args=[group.pk, others[0].pk]),
        {"negative": "1"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="similar"')
    shown = [int(pk) for pk in re.findall(r'<li class="tile" data-id="(\d+)"', body)]
    assert others[0].pk not in shown and set(shown) >= {o.pk for o in others[1:]}


def test_warnings_for_size_near_duplicates_and_other_captions(
    annotator: Any, reviewer: Any, png_factory: Any, settings: Any
) -> None:
    settings.RELSIM_GROUP_MAX_SIZE = 3
    data = png_factory(3, size=96)
    original = image_store(normalised=normalise_image(data)).image
    copy = image_store(normalised=normalise_image(_copy(data, 150))).image
    others = _images(png_factory, 2, start=20)
    elsewhere = group_create(title="elsewhere", images=[others[0], others[1]])
    caption = caption_create(text="A {Object} on a {Object}.", group=elsewhere)
    Caption.objects.filter(pk=caption.pk).update(status=Caption.Status.APPROVED)
    group = group_create(title="g", images=[original, copy, others[0], others[1]])
    body = _client(annotator).get(reverse("group_detail", args=[group.pk])).content.decode()
    kinds = set(re.findall(r'<li class="warning-([a-z-]+)">', body))
    assert kinds == {"size", "near-duplicate", "other-group"}
    assert "this one has 4" in body and "captioned “A {Object} on a {Object}.”" in body


def test_a_group_becomes_ready_only_with_two_to_n_images(annotator: Any, png_factory: Any) -> None:
    group = group_create(title="g", images=_images(png_factory, 1))
    client = _client(annotator)
    response = client.post(reverse("group_state", args=[group.pk]), {"state": "ready"}, follow=True)
    assert "2 to 10 images; this one has 1" in response.content.decode()
    group.refresh_from_db()
    assert group.state == "draft"


def test_the_group_list_counts_members_and_shows_the_first_six_in_order(
    png_factory: Any, annotator: Any, django_assert_max_num_queries: Any
) -> None:
    images = _images(png_factory, 9)
    big = group_create(title="Nine", images=images, user=annotator)
    group_create(title="Empty", user=annotator)
    client = _client(annotator)
    with django_assert_max_num_queries(12):
        page = client.get(reverse("group_list")).content.decode()
    row = page.split(f'href="/groups/{big.pk}/"')[1].split("</li>")[0]
    assert "9 images" in row
    thumbs = re.findall(r'<img src="([^"]+)"', row)
    assert thumbs == [image.thumbnail.url for image in images[:6]]
    empty = page.split("<strong>Empty</strong>")[1].split("</li>")[0]
    assert "0 images" in empty
