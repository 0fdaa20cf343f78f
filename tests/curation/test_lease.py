"""Lease exclusivity in the labelling queue, on a clock the test sets: a lease held by one
annotator cannot be taken or given up by another, and is free from its expiry time on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from curation import labelling
from curation.intake import normalise_image
from curation.models import Image, LabelLease
from curation.services import image_store

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

LEASE = timedelta(seconds=60)
# Microseconds in the start time make the edge tests exact to the microsecond.
START = datetime(2030, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
TICK = timedelta(microseconds=1)


class Clock:
    """What `django.utils.timezone.now` returns while a test runs."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Clock:
    settings.RELSIM_LEASE_SECONDS = int(LEASE.total_seconds())
    fixed = Clock(START)
    monkeypatch.setattr(timezone, "now", fixed)
    return fixed


@pytest.fixture
def image(png_factory: Any) -> Image:
    return image_store(normalised=normalise_image(png_factory(0))).image


@pytest.fixture
def holder(django_user_model: Any) -> Any:
    # Leases do not look at roles; users without a password are quicker to make.
    return django_user_model.objects.create(username="first")


@pytest.fixture
def other(django_user_model: Any) -> Any:
    return django_user_model.objects.create(username="second")


def _by_queue(holder: Any, image: Image) -> bool:
    return labelling.lease_next_image(annotator=holder) == image


def _by_undo(holder: Any, image: Image) -> bool:
    return labelling.lease_image(annotator=holder, image=image)


# The two ways an annotator can come to hold an image: the queue hands out the next free one,
# and an undo asks for a given one back.
WAYS: dict[str, Callable[[Any, Image], bool]] = {"queue": _by_queue, "undo": _by_undo}


def _holder(image: Image) -> tuple[str, datetime]:
    lease = LabelLease.objects.select_related("annotator").get(image=image)
    return lease.annotator.get_username(), lease.expires_at


@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_held_lease_cannot_be_taken_by_another_annotator(
    clock: Clock, image: Image, holder: Any, other: Any, way: str
) -> None:
    assert labelling.lease_next_image(annotator=holder) == image
    clock.now = START + LEASE / 2
    assert WAYS[way](other, image) is False
    assert _holder(image) == (holder.get_username(), START + LEASE)


def test_a_lease_cannot_be_given_up_by_another_annotator(
    clock: Clock, image: Image, holder: Any, other: Any
) -> None:
    assert labelling.lease_next_image(annotator=holder) == image
    labelling.release_lease(annotator=other, image=image)
    assert _holder(image) == (holder.get_username(), START + LEASE)
    assert labelling.lease_next_image(annotator=other) is None


@pytest.mark.parametrize("way", sorted(WAYS))
def test_an_expired_lease_can_be_taken_by_another_annotator(
    clock: Clock, image: Image, holder: Any, other: Any, way: str
) -> None:
    assert labelling.lease_next_image(annotator=holder) == image
    clock.now = START + 2 * LEASE
    assert WAYS[way](other, image) is True
    assert _holder(image) == (other.get_username(), START + 3 * LEASE)
    # The first holder has lost it and is not handed it back.
    assert labelling.lease_next_image(annotator=holder) is None


@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_lease_holds_until_its_last_microsecond(
    clock: Clock, image: Image, holder: Any, other: Any, way: str
) -> None:
    assert labelling.lease_next_image(annotator=holder) == image
    clock.now = START + LEASE - TICK
    assert WAYS[way](other, image) is False
    assert _holder(image) == (holder.get_username(), START + LEASE)


@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_lease_is_free_at_its_expiry_time_exactly(
    clock: Clock, image: Image, holder: Any, other: Any, way: str
) -> None:
    assert labelling.lease_next_image(annotator=holder) == image
    clock.now = START + LEASE
    assert WAYS[way](other, image) is True
    assert _holder(image) == (other.get_username(), START + 2 * LEASE)


def test_a_lease_is_renewed_each_time_its_holder_asks_again(
    clock: Clock, image: Image, holder: Any, other: Any
) -> None:
    assert labelling.lease_next_image(annotator=holder) == image
    clock.now = START + LEASE - TICK
    assert labelling.lease_next_image(annotator=holder) == image
    assert _holder(image) == (holder.get_username(), START + 2 * LEASE - TICK)
    # Past the first expiry time, but inside the renewed lease.
    clock.now = START + LEASE + LEASE / 2
    assert labelling.lease_image(annotator=other, image=image) is False
    assert labelling.lease_next_image(annotator=other) is None


def test_the_queue_passes_over_any_number_of_images_held_by_others(
    clock: Clock, holder: Any, other: Any
) -> None:
    # More held images than the queue looks at in one try, then a free one.
    held = labelling.CANDIDATES_PER_TRY + 1
    Image.objects.bulk_create(
        Image(
            sha256=f"{n:064x}",
            md5=f"{n:032x}",
            width=8,
            height=8,
            original_format="PNG",
            file=f"images/{n}.png",
            phash=f"{n:016x}",
        )
        for n in range(held + 1)
    )
    images = list(Image.objects.order_by("id"))
    LabelLease.objects.bulk_create(
        LabelLease(image=image, annotator=holder, expires_at=START + LEASE)
        for image in images[:held]
    )
    assert labelling.lease_next_image(annotator=other) == images[held]
