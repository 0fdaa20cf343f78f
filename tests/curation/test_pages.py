"""Pool, image page, labelling queue and agreement: behaviour behind the pages."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from PIL import Image as PILImage

from curation import labelling
from curation.intake import normalise_image
from curation.models import Image, InterestLabel, LabelLease
from curation.services import group_create, image_store, interest_label_set

pytestmark = pytest.mark.django_db


def _images(png_factory: Any, count: int, start: int = 0) -> list[Image]:
    return [
        image_store(normalised=normalise_image(png_factory(start + n))).image for n in range(count)
    ]


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _ids(response: Any) -> list[int]:
    return [image.pk for image in response.context["page"].images]


def test_pool_filters_by_label_group_batch_and_score(
    annotator: Any, reviewer: Any, png_factory: Any
) -> None:
    images = _images(png_factory, 6)
    interest_label_set(image=images[0], annotator=annotator, interesting=True)
    interest_label_set(image=images[1], annotator=annotator, interesting=False)
    interest_label_set(image=images[2], annotator=reviewer, interesting=True)
    group = group_create(title="g", images=images[3:5])
    Image.objects.filter(pk=images[5].pk).update(filter_score=0.9)
    Image.objects.filter(pk=images[4].pk).update(filter_score=0.2)
    client = _client(annotator)
    url = reverse("pool")
    assert _ids(client.get(url, {"label": "mine-yes"})) == [images[0].pk]
    assert _ids(client.get(url, {"label": "mine-no"})) == [images[1].pk]
    assert set(_ids(client.get(url, {"label": "any-yes"}))) == {images[0].pk, images[2].pk}
    assert set(_ids(client.get(url, {"label": "unlabelled"}))) == {i.pk for i in images[3:]}
    assert set(_ids(client.get(url, {"group": str(group.pk)}))) == {images[3].pk, images[4].pk}
    assert images[3].pk not in _ids(client.get(url, {"group": "none"}))
    assert _ids(client.get(url, {"score_min": "0.5"})) == [images[5].pk]
    assert _ids(client.get(url, {"sort": "score-low"})) == [images[4].pk, images[5].pk]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"score_min": "lots"}, "Enter a number"),
        ({"score_min": "0.9", "score_max": "0.1"}, "must not exceed"),
        ({"group": "abc"}, "Choose a group"),
        ({"after": "not-a-cursor"}, "page link is not valid"),
        ({"label": "maybe"}, "Select a valid choice"),
    ],
)
def test_pool_explains_bad_parameters(annotator: Any, params: dict[str, str], message: str) -> None:
    response = _client(annotator).get(reverse("pool"), params)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_pool_pages_cover_every_image_once_in_both_directions(
    annotator: Any, png_factory: Any, settings: Any
) -> None:
    settings.RELSIM_POOL_PAGE_SIZE = 4
    images = _images(png_factory, 10)
    client = _client(annotator)
    seen: list[int] = []
    pages = []
    params: dict[str, str] = {}
    while True:
        response = client.get(reverse("pool"), params)
        pages.append(_ids(response))
        seen += pages[-1]
        cursor = response.context["page"].next_cursor
        if not cursor:
            break
        params = {"after": cursor}
    assert seen == sorted((i.pk for i in images), reverse=True)
    back = client.get(reverse("pool"), {"before": response.context["page"].prev_cursor})
    assert _ids(back) == pages[-2]


def test_pool_costs_the_same_queries_on_a_small_and_a_large_pool_and_a_deep_page(
    annotator: Any, png_factory: Any, settings: Any
) -> None:
    settings.RELSIM_POOL_PAGE_SIZE = 5
    client = _client(annotator)
    _images(png_factory, 6)
    client.get(reverse("pool"))  # warm the session and permission caches

    def count(params: dict[str, str]) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("pool"), params).status_code == 200
        return len(queries)

    small = count({})
    more = _images(png_factory, 30, start=100)
    group_create(title="g", images=more[:3])
    large = count({})
    deep = count({"after": str(more[2].pk)})
    assert small == large == deep


def test_image_page_lists_near_duplicates(annotator: Any, png_factory: Any) -> None:
    original = png_factory(7, size=128)
    bigger = PILImage.open(io.BytesIO(original)).resize((256, 256))
    buffer = io.BytesIO()
    bigger.save(buffer, format="PNG")
    first = image_store(normalised=normalise_image(original)).image
    second = image_store(normalised=normalise_image(buffer.getvalue())).image
    unrelated = _images(png_factory, 1, start=50)[0]
    response = _client(annotator).get(reverse("image_detail", args=[first.pk]))
    near = [image.pk for image, _ in response.context["near"]]
    assert second.pk in near and unrelated.pk not in near


def test_two_annotators_never_get_the_same_image(
    annotator: Any, reviewer: Any, png_factory: Any
) -> None:
    _images(png_factory, 3)
    first = labelling.lease_next_image(annotator=annotator)
    second = labelling.lease_next_image(annotator=reviewer)
    assert first is not None and second is not None and first.pk != second.pk
    assert labelling.lease_next_image(annotator=annotator) == first  # same lease, resumed


def test_an_expired_lease_is_reclaimed(annotator: Any, reviewer: Any, png_factory: Any) -> None:
    _images(png_factory, 1)
    held = labelling.lease_next_image(annotator=annotator)
    assert labelling.lease_next_image(annotator=reviewer) is None
    LabelLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert labelling.lease_next_image(annotator=reviewer) == held


@pytest.mark.django_db(transaction=True)
def test_annotators_asking_at_the_same_moment_get_different_images(
    make_user: Any, png_factory: Any
) -> None:
    _images(png_factory, 8)
    users = [make_user(f"a{n}", "annotator") for n in range(4)]
    barrier = threading.Barrier(len(users))
    got: dict[str, int | None] = {}

    def ask(user: Any) -> None:
        try:
            barrier.wait()
            image = labelling.lease_next_image(annotator=user)
            got[user.username] = image.pk if image else None
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    values = [v for v in got.values() if v is not None]
    assert len(values) == len(users)
    assert len(set(values)) == len(users)


def test_labelling_by_the_queue_with_skip_and_undo(annotator: Any, png_factory: Any) -> None:
    images = _images(png_factory, 3)
    client = _client(annotator)
    first = client.get(reverse("label_queue")).context["image"]
    client.post(reverse("label_submit"), {"image": first.pk, "answer": "yes"})
    second = client.get(reverse("label_queue")).context["image"]
    assert second != first
    client.post(reverse("label_submit"), {"image": second.pk, "answer": "skip"})
    third = client.get(reverse("label_queue")).context["image"]
    assert third not in (first, second)
    client.post(reverse("label_submit"), {"image": third.pk, "answer": "no"})
    assert InterestLabel.objects.filter(annotator=annotator).count() == 2
    client.post(reverse("label_undo"))
    assert not InterestLabel.objects.filter(image=third).exists()
    response = client.get(reverse("label_queue"))
    assert response.context["image"] == third  # the undone image comes back first
    assert response.context["counts"].labelled_by_me == 1
    assert set(images) == {first, second, third}


def test_a_bad_answer_is_refused(annotator: Any, png_factory: Any) -> None:
    image = _images(png_factory, 1)[0]
    response = _client(annotator).post(
        reverse("label_submit"), {"image": image.pk, "answer": "maybe"}
    )
    assert response.status_code == 400
    assert not InterestLabel.objects.exists()


def test_agreement_shows_the_rate_and_the_disagreements(
    annotator: Any, reviewer: Any, png_factory: Any
) -> None:
    images = _images(png_factory, 3)
    for image, (a, b) in zip(images, [(True, True), (True, False), (False, False)], strict=True):
        interest_label_set(image=image, annotator=annotator, interesting=a)
        interest_label_set(image=image, annotator=reviewer, interesting=b)
    response = _client(annotator).get(reverse("agreement"))
    result = response.context["agreement"]
    assert result.images_with_several_labels == 3
    assert result.rate == pytest.approx(2 / 3)
    assert [row.image for row in result.disagreements] == [images[1]]
    assert result.disagreements[0].yes == [annotator.username]


def test_labels_per_image_setting_asks_a_second_annotator(
    annotator: Any, reviewer: Any, png_factory: Any, settings: Any
) -> None:
    settings.RELSIM_LABELS_PER_IMAGE = 2
    image = _images(png_factory, 1)[0]
    interest_label_set(image=image, annotator=annotator, interesting=True)
    assert labelling.lease_next_image(annotator=reviewer) == image
    assert labelling.lease_next_image(annotator=annotator) is None
