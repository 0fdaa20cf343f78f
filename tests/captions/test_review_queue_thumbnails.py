"""The review queue's thumbnails: a group shows its first members in order, however large it
is; a draft for one image shows that image."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from captions import services
from curation.intake import normalise_image
from curation.models import GroupMember
from curation.services import group_create, image_store

pytestmark = pytest.mark.django_db


def _thumbnails(page: str) -> list[str]:
    return [part.split('"', 1)[0] for part in page.split('alt="image ')[1:]]


def test_a_large_group_shows_its_first_four_members_in_their_order(
    png_factory: Any, annotator: Any, reviewer: Any
) -> None:
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(7)]
    group = group_create(title="Seven", images=images)
    # Reordered: position, not id, decides which members come first.
    for position, image in enumerate(reversed(images)):
        GroupMember.objects.filter(group=group, image=image).update(position=position)
    services.caption_create(text="A {Object} beside a {Object}.", group=group, author=annotator)
    single = image_store(normalised=normalise_image(png_factory(99))).image
    services.caption_create(text="A {Object} alone.", image=single, author=annotator)

    client = Client()
    client.force_login(reviewer)
    page = client.get(reverse("review_queue")).content.decode()

    assert _thumbnails(page) == [str(image.pk) for image in images[::-1][:4]] + [str(single.pk)]
    assert single.thumbnail.url in page
    assert all(image.thumbnail.url in page for image in images[::-1][:4])
    assert images[0].thumbnail.url not in page
