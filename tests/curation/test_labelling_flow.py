"""The labelling flow: undo brings its image back, the counts add up, and agreement is
corrected for chance."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from curation import labelling
from curation.intake import normalise_image
from curation.models import Image, InterestLabel, LabelLease
from curation.services import image_store, interest_label_set

pytestmark = pytest.mark.django_db


def _images(png_factory: Any, count: int, start: int = 0) -> list[Image]:
    return [
        image_store(normalised=normalise_image(png_factory(start + n))).image for n in range(count)
    ]


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _shown(client: Client) -> Image | None:
    image: Image | None = client.get(reverse("label_queue")).context["image"]
    return image


def _label(client: Client, image: Image, answer: str = "yes") -> None:
    client.post(reverse("label_submit"), {"image": image.pk, "answer": answer})


def test_undo_shows_the_undone_image_next_even_while_another_image_is_leased(
    annotator: Any, png_factory: Any
) -> None:
    images = _images(png_factory, 4)
    client = _client(annotator)
    _label(client, _shown(client) or images[0])
    _label(client, _shown(client) or images[1])
    assert _shown(client) == images[2]  # leased to this annotator while undo is pressed
    client.post(reverse("label_undo"))
    assert _shown(client) == images[1]
    assert list(LabelLease.objects.filter(annotator=annotator).values_list("image", flat=True)) == [
        images[1].pk
    ]
    # Labelling it again carries on where the queue was.
    _label(client, images[1], "no")
    assert _shown(client) == images[2]
    client.post(reverse("label_undo"))
    client.post(reverse("label_undo"))
    assert _shown(client) == images[0]  # each undo goes one label further back


def test_lease_image_gives_back_the_annotators_other_lease_for_someone_else(
    annotator: Any, reviewer: Any, png_factory: Any
) -> None:
    images = _images(png_factory, 2)
    assert labelling.lease_next_image(annotator=annotator) == images[0]
    assert labelling.lease_image(annotator=annotator, image=images[1])
    assert labelling.lease_next_image(annotator=annotator) == images[1]
    assert labelling.lease_next_image(annotator=reviewer) == images[0]


def test_labelling_takes_one_off_remaining_and_undo_puts_it_back(
    annotator: Any, reviewer: Any, make_user: Any, png_factory: Any, settings: Any
) -> None:
    settings.RELSIM_LABELS_PER_IMAGE = 2
    images = _images(png_factory, 5)
    interest_label_set(image=images[4], annotator=reviewer, interesting=True)
    client = _client(annotator)
    before = labelling.queue_counts(annotator)
    assert (before.labelled_by_me, before.remaining, before.total) == (0, 5, 5)
    for done in (1, 2):
        _label(client, _shown(client) or images[0])
        counts = labelling.queue_counts(annotator)
        assert (counts.labelled_by_me, counts.remaining, counts.total) == (done, 5 - done, 5)
    client.post(reverse("label_undo"))
    counts = labelling.queue_counts(annotator)
    assert (counts.labelled_by_me, counts.remaining, counts.total) == (1, 4, 5)
    # Labels by someone else do not count as mine, and never add to what remains: an image
    # with its two labels from others is done.
    interest_label_set(image=images[4], annotator=make_user("third"), interesting=False)
    counts = labelling.queue_counts(annotator)
    assert (counts.labelled_by_me, counts.remaining) == (1, 3)
    page = client.get(reverse("label_queue")).content.decode()
    assert "You labelled 1 (1 today); 3 left for you, of 4." in page


def test_cohen_kappa_matches_the_textbook_case() -> None:
    # Two readers of 50 proposals: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no.
    # Observed 0.7, chance 0.5*0.6 + 0.5*0.4 = 0.5, so kappa = 0.2 / 0.5 = 0.4.
    pairs = [(True, True)] * 20 + [(True, False)] * 5 + [(False, True)] * 10 + [(False, False)] * 15
    assert labelling.cohen_kappa(pairs) == pytest.approx(0.4)
    assert labelling.cohen_kappa([(True, True)] * 3) is None
    assert labelling.cohen_kappa([]) is None


def test_fleiss_kappa_matches_the_textbook_case() -> None:
    # Fleiss (1971) as worked in most textbooks: 10 items, 14 raters, 5 categories.
    counts = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert labelling.fleiss_kappa(counts) == pytest.approx(0.20993, abs=1e-5)
    assert labelling.fleiss_kappa([[2, 0], [2, 0]]) is None


def test_with_two_annotators_fleiss_and_cohen_agree(
    annotator: Any, reviewer: Any, png_factory: Any
) -> None:
    answers = [(True, True), (True, False), (False, False), (False, False), (True, True)]
    images = _images(png_factory, len(answers))
    for image, (a, b) in zip(images, answers, strict=True):
        interest_label_set(image=image, annotator=annotator, interesting=a)
        interest_label_set(image=image, annotator=reviewer, interesting=b)
    result = labelling.agreement()
    [pair] = result.pairs
    assert (pair.first, pair.second, pair.images) == (annotator.username, reviewer.username, 5)
    assert pair.kappa == pytest.approx(labelling.cohen_kappa(answers))
    # Observed 0.8, chance 0.4*0.6 + 0.6*0.4 = 0.48: Cohen 0.32/0.52; Fleiss pools the two
    # raters' shares (0.5, 0.5): (0.8 - 0.5) / 0.5.
    assert pair.kappa == pytest.approx(0.32 / 0.52)
    assert result.fleiss_kappa == pytest.approx(0.6)


def test_the_agreement_page_shows_kappa_and_links_each_disagreement_to_its_image(
    annotator: Any, reviewer: Any, make_user: Any, png_factory: Any
) -> None:
    third = make_user("third", "annotator")
    images = _images(png_factory, 3)
    for image, votes in zip(
        images, [(True, True, True), (True, False, None), (False, False, True)], strict=True
    ):
        for user, vote in zip((annotator, reviewer, third), votes, strict=True):
            if vote is not None:
                interest_label_set(image=image, annotator=user, interesting=vote)
    page = _client(annotator).get(reverse("agreement")).content.decode()
    assert 'id="fleiss-kappa"' in page and "kappa per pair of annotators" in page
    for image in images[1:]:
        assert reverse("image_detail", args=[image.pk]) in page
        assert image.thumbnail.url in page
    assert reverse("image_detail", args=[images[0].pk]) not in page
    assert "2 images where annotators disagree" in page


def test_the_agreement_page_needs_as_many_queries_for_many_images_as_for_few(
    annotator: Any,
    reviewer: Any,
    make_user: Any,
    png_factory: Any,
    django_assert_max_num_queries: Any,
) -> None:
    client = _client(annotator)
    users = [annotator, reviewer, make_user("third", "annotator")]

    def label(images: list[Image]) -> None:
        for n, image in enumerate(images):
            for k, user in enumerate(users):
                interest_label_set(image=image, annotator=user, interesting=(n + k) % 2 == 0)

    label(_images(png_factory, 2))
    client.get(reverse("agreement"))  # warm the session and caches
    with django_assert_max_num_queries(10) as few:
        client.get(reverse("agreement"))
    label(_images(png_factory, 12, start=10))
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("agreement"))
    assert len(response.context["agreement"].disagreements) == 14
    assert InterestLabel.objects.count() == 42
