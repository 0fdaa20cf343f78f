"""Database constraints that keep the data set consistent whatever code writes to it."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from captions.models import Caption, CaptionRevision
from curation.models import Group, GroupMember, Image, InterestLabel
from curation.services import group_add_images, group_create, group_set_state, interest_label_set
from training.models import Job

pytestmark = pytest.mark.django_db


def _image(n: int) -> Image:
    return Image.objects.create(
        sha256=f"{n:064x}",
        md5=f"{n:032x}",
        width=10,
        height=10,
        original_format="PNG",
        file=f"images/{n}.png",
        phash="0" * 16,
    )


def test_an_image_is_stored_once_per_content() -> None:
    _image(1)
    with pytest.raises(IntegrityError), transaction.atomic():
        _image(1)


def test_an_image_has_a_positive_size() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Image.objects.create(
            sha256="f" * 64, md5="f" * 32, width=0, height=5, original_format="PNG", phash="0" * 16
        )


def test_one_interest_label_per_annotator_and_image(annotator: Any, reviewer: Any) -> None:
    image = _image(1)
    interest_label_set(image=image, annotator=annotator, interesting=True)
    interest_label_set(image=image, annotator=annotator, interesting=False)
    interest_label_set(image=image, annotator=reviewer, interesting=True)
    assert InterestLabel.objects.filter(image=image).count() == 2
    assert InterestLabel.objects.get(image=image, annotator=annotator).interesting is False
    with pytest.raises(IntegrityError), transaction.atomic():
        InterestLabel.objects.create(image=image, annotator=annotator, interesting=True)


def test_group_members_are_ordered_and_an_image_may_be_in_several_groups() -> None:
    images = [_image(n) for n in range(1, 5)]
    first = group_create(title="first", images=[images[2], images[0], images[1]])
    second = group_create(title="second", images=[images[0], images[3]])
    assert [m.image_id for m in first.members.all()] == [images[2].pk, images[0].pk, images[1].pk]
    assert images[0].groups.count() == 2
    assert group_add_images(group=first, images=[images[0], images[3]]) == 1
    assert [m.position for m in first.members.all()] == [0, 1, 2, 3]
    with pytest.raises(IntegrityError), transaction.atomic():
        GroupMember.objects.create(group=second, image=images[3], position=9)


def test_a_ready_group_needs_two_to_n_members(settings: Any) -> None:
    settings.RELSIM_GROUP_MAX_SIZE = 3
    images = [_image(n) for n in range(1, 6)]
    group = group_create(title="g", images=images[:1])
    with pytest.raises(ValidationError, match="2 to 3 images; this one has 1"):
        group_set_state(group=group, state=Group.State.READY)
    group_add_images(group=group, images=images[1:2])
    assert group_set_state(group=group, state=Group.State.READY).state == Group.State.READY
    group_add_images(group=group, images=images[2:])
    with pytest.raises(ValidationError, match="this one has 5"):
        group_set_state(group=group, state=Group.State.READY)


def test_a_caption_is_for_a_group_or_an_image_never_both() -> None:
    image = _image(1)
    group = group_create(title="g", images=[image])
    with pytest.raises(IntegrityError), transaction.atomic():
        Caption.objects.create(text="x", group=group, image=image, split="train")
    with pytest.raises(IntegrityError), transaction.atomic():
        Caption.objects.create(text="x")


def test_only_one_approved_caption_per_group() -> None:
    group = group_create(title="g", images=[_image(1), _image(2)])
    Caption.objects.create(text="A {Object}.", group=group, status=Caption.Status.APPROVED)
    Caption.objects.create(text="Another {Object}.", group=group, status=Caption.Status.DRAFT)
    with pytest.raises(IntegrityError), transaction.atomic():
        Caption.objects.create(text="Third {Object}.", group=group, status=Caption.Status.APPROVED)


def test_a_caption_text_is_never_empty() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Caption.objects.create(text="", image=_image(1), split="train")


def test_one_revision_per_caption_version() -> None:
    caption = Caption.objects.create(text="A {Object}.", image=_image(1), split="train")
    CaptionRevision.objects.create(
        caption=caption, action="create", text_after="a", status_after="draft", version=1
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        CaptionRevision.objects.create(
            caption=caption, action="edit", text_after="b", status_after="draft", version=1
        )


def test_job_progress_is_a_fraction() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(kind=Job.Kind.EMBED, progress=1.5)
