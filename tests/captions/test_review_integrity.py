"""Review cannot be bypassed: approved text changes only through review, reviewers do not
approve their own words, and a group's new members send its caption back to review."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from captions import services
from captions.export import ExportOptions, collect
from captions.models import Caption, CaptionRevision
from captions.text import word_edit_distance
from curation.intake import normalise_image
from curation.services import group_add_images, group_create, group_remove_image, image_store

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


def _images(png_factory: Any, seeds: range) -> list[Any]:
    return [image_store(normalised=normalise_image(png_factory(n))).image for n in seeds]


@pytest.fixture
def group(png_factory: Any) -> Any:
    return group_create(title="g", images=_images(png_factory, range(3)))


@pytest.fixture
def approved(group: Any, make_user: Any, reviewer: Any) -> Caption:
    author = make_user("writer", "annotator")
    caption = services.caption_create(
        text="A {Object} hidden inside a {Object}.", group=group, author=author
    )
    return services.caption_approve(caption=caption, reviewer=reviewer)


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _exported_caption(group: Any) -> str | None:
    """The caption the export would ship for the test's only group."""
    rows = collect(ExportOptions())["seed_groups"]
    assert len(rows) <= 1
    return str(rows[0]["anonymous_caption"]) if rows else None


def test_words_are_counted_as_insertions_deletions_and_replacements() -> None:
    assert word_edit_distance("a b c", "a b c") == 0
    assert word_edit_distance("a b c", "a x c") == 1
    assert word_edit_distance("a b c", "a c") == 1
    assert word_edit_distance("", "a b") == 2
    assert word_edit_distance("a b c d", "d c b a") == 4


def test_editing_an_approved_caption_starts_a_draft_and_export_keeps_the_approved_text(
    approved: Caption, annotator: Any, group: Any
) -> None:
    response = _client(annotator).post(
        reverse("caption_save", args=[approved.pk]),
        {"text": "A {Object} tucked inside a {Object}.", "version": approved.version},
    )
    assert response.status_code == 302
    approved.refresh_from_db()
    assert approved.status == Caption.Status.APPROVED
    assert approved.text == "A {Object} hidden inside a {Object}."
    draft = Caption.objects.get(group=group, status=Caption.Status.DRAFT)
    assert draft.text == "A {Object} tucked inside a {Object}." and draft.author == annotator
    assert response["Location"] == reverse("edit_group_caption", args=[group.pk])
    assert _exported_caption(group) == "A {Object} hidden inside a {Object}."

    editor = _client(annotator).get(reverse("edit_group_caption", args=[group.pk]))
    assert editor.context["caption"] == draft


def test_an_autosave_of_an_approved_caption_sends_the_editor_to_the_new_draft(
    approved: Caption, annotator: Any, group: Any
) -> None:
    response = _client(annotator).post(
        reverse("caption_save", args=[approved.pk]),
        {"text": "A {Object} tucked inside a {Object}.", "version": approved.version},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("edit_group_caption", args=[group.pk])
    approved.refresh_from_db()
    assert approved.status == Caption.Status.APPROVED


def test_the_editor_says_that_an_approved_caption_is_revised_through_review(
    approved: Caption, annotator: Any, group: Any
) -> None:
    page = _client(annotator).get(reverse("edit_group_caption", args=[group.pk]))
    assert b'id="approved-note"' in page.content
    # No autosave on approved text: a save is a deliberate new draft.
    autosave = f'hx-post="{reverse("caption_save", args=[approved.pk])}"'
    assert autosave.encode() not in page.content


def test_approving_the_revision_supersedes_the_old_text_which_leaves_the_queue(
    approved: Caption, annotator: Any, make_user: Any, group: Any
) -> None:
    draft = services.caption_edit(
        caption=approved,
        text="A {Object} tucked inside a {Object}.",
        based_on_version=approved.version,
        editor=annotator,
    )
    assert draft.pk != approved.pk
    second_reviewer = make_user("rev2", "reviewer")
    page = _client(second_reviewer).get(reverse("review_detail", args=[draft.pk]))
    assert page.context["replaces"] == approved
    assert ("ins", "tucked") in page.context["replaces_diff"]

    services.caption_approve(caption=draft, reviewer=second_reviewer)
    approved.refresh_from_db()
    assert approved.status == Caption.Status.SUPERSEDED
    assert approved not in Caption.objects.filter(status=Caption.Status.DRAFT)
    assert _exported_caption(group) == "A {Object} tucked inside a {Object}."


def test_a_second_revision_of_an_approved_caption_is_a_conflict_with_the_first(
    approved: Caption, annotator: Any, make_user: Any
) -> None:
    first = services.caption_edit(
        caption=approved,
        text="First {Object}.",
        based_on_version=approved.version,
        editor=annotator,
    )
    with pytest.raises(services.StaleCaption) as caught:
        services.caption_edit(
            caption=approved,
            text="Second {Object}.",
            based_on_version=approved.version,
            editor=make_user("other", "annotator"),
        )
    assert caught.value.current == first
    assert Caption.objects.filter(status=Caption.Status.DRAFT).count() == 1


def test_a_reviewer_cannot_approve_after_rewriting_a_draft_in_the_editor(
    group: Any, annotator: Any, reviewer: Any
) -> None:
    draft = services.caption_create(
        text="A {Object} next to a {Object}.", group=group, author=annotator
    )
    services.caption_edit(
        caption=draft,
        text="Several {Animal} queueing patiently behind one small {Object} today.",
        based_on_version=draft.version,
        editor=reviewer,
    )
    draft.refresh_from_db()
    client = _client(reviewer)
    page = client.get(reverse("review_detail", args=[draft.pk]))
    assert "another reviewer approves it" in page.context["blocker"]
    client.post(reverse("review_approve", args=[draft.pk]), {"version": draft.version})
    draft.refresh_from_db()
    assert draft.status == Caption.Status.DRAFT


def test_a_large_edit_then_approve_keeps_the_edit_for_another_reviewer(
    group: Any, annotator: Any, reviewer: Any, make_user: Any
) -> None:
    draft = services.caption_create(
        text="A {Object} next to a {Object}.", group=group, author=annotator
    )
    new_text = "Several {Animal} queueing patiently behind one small {Object} today."
    response = _client(reviewer).post(
        reverse("review_approve", args=[draft.pk]), {"version": draft.version, "text": new_text}
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == Caption.Status.DRAFT and draft.text == new_text
    last = draft.revisions.order_by("-version").first()
    assert last.action == CaptionRevision.Action.EDIT and last.actor == reviewer

    services.caption_approve(caption=draft, reviewer=make_user("rev2", "reviewer"))
    draft.refresh_from_db()
    assert draft.status == Caption.Status.APPROVED


def test_a_small_edit_then_approve_is_one_action_recorded_as_the_reviewers(
    group: Any, annotator: Any, reviewer: Any, settings: Any
) -> None:
    settings.RELSIM_REVIEW_EDIT_WORDS = 2
    draft = services.caption_create(
        text="A {Object} next to a {Object}.", group=group, author=annotator
    )
    approved = services.caption_approve(
        caption=draft, reviewer=reviewer, text="A {Object} right next to the {Object}."
    )
    assert approved.status == Caption.Status.APPROVED and approved.reviewer == reviewer
    actions = list(approved.revisions.order_by("version").values_list("action", "actor"))
    assert actions == [("create", annotator.pk), ("edit", reviewer.pk), ("approve", reviewer.pk)]


def test_the_edit_allowance_is_measured_from_the_last_text_someone_else_wrote(
    group: Any, annotator: Any, reviewer: Any, settings: Any
) -> None:
    settings.RELSIM_REVIEW_EDIT_WORDS = 2
    draft = services.caption_create(
        text="A {Object} next to a {Object}.", group=group, author=annotator
    )
    # Two small saves in a row add up to three changed words: over the allowance.
    draft = services.caption_edit(
        caption=draft,
        text="A {Object} right next to a {Object}.",
        based_on_version=1,
        editor=reviewer,
    )
    draft = services.caption_edit(
        caption=draft,
        text="A {Object} right next to the big {Object}.",
        based_on_version=draft.version,
        editor=reviewer,
    )
    assert services.own_words(draft, reviewer) == 3
    with pytest.raises(services.ReviewNotAllowed):
        services.caption_approve(caption=draft, reviewer=reviewer)
    settings.RELSIM_ALLOW_SELF_APPROVAL = True
    assert services.caption_approve(caption=draft, reviewer=reviewer).status == "approved"


def test_bulk_approve_skips_drafts_whose_text_the_reviewer_rewrote(
    group: Any, annotator: Any, reviewer: Any
) -> None:
    draft = services.caption_create(
        text="A {Object} next to a {Object}.", group=group, author=annotator
    )
    services.caption_edit(
        caption=draft,
        text="Several {Animal} queueing patiently behind one small {Object} today.",
        based_on_version=1,
        editor=reviewer,
    )
    result = services.captions_bulk_approve(captions=[draft], reviewer=reviewer)
    assert result == {"approved": 0, "skipped": 1}


def test_adding_a_member_sends_the_approved_caption_back_to_review_with_the_change(
    approved: Caption, group: Any, png_factory: Any, annotator: Any, reviewer: Any
) -> None:
    [extra] = _images(png_factory, range(50, 51))
    response = _client(annotator).post(
        reverse("group_add", args=[group.pk]), {"images": str(extra.pk)}
    )
    assert response.status_code in (200, 302)
    approved.refresh_from_db()
    assert approved.status == Caption.Status.DRAFT
    assert _exported_caption(group) is None
    last = approved.revisions.order_by("-version").first()
    assert last.action == CaptionRevision.Action.MEMBERS and last.actor == annotator
    assert last.details == {"added": [extra.pk], "removed": []}

    page = _client(reviewer).get(reverse("review_detail", args=[approved.pk]))
    change = page.context["members_change"]
    assert change["added"] == [extra] and change["removed"] == []
    assert b'id="members-change"' in page.content


def test_removing_a_member_sends_the_approved_caption_back_to_review(
    approved: Caption, group: Any, annotator: Any, reviewer: Any
) -> None:
    gone = group.members.order_by("position").first().image
    _client(annotator).post(reverse("group_remove", args=[group.pk, gone.pk]))
    approved.refresh_from_db()
    assert approved.status == Caption.Status.DRAFT
    page = _client(reviewer).get(reverse("review_detail", args=[approved.pk]))
    assert page.context["members_change"]["removed"] == [gone]


def test_a_member_added_and_removed_again_shows_no_net_change(
    approved: Caption, group: Any, png_factory: Any
) -> None:
    [extra] = _images(png_factory, range(60, 61))
    group_add_images(group=group, images=[extra])
    group_remove_image(group=group, image=extra)
    approved.refresh_from_db()
    assert approved.status == Caption.Status.DRAFT
    from captions.selectors import members_change

    change = members_change(approved)
    assert change is not None and change["added"] == [] and change["removed"] == []


def test_adding_an_image_already_in_the_group_changes_nothing(
    approved: Caption, group: Any
) -> None:
    member = group.members.first().image
    assert group_add_images(group=group, images=[member]) == 0
    approved.refresh_from_db()
    assert approved.status == Caption.Status.APPROVED


def test_drafts_are_not_touched_by_member_changes(
    group: Any, annotator: Any, png_factory: Any
) -> None:
    draft = services.caption_create(text="A {Object}.", group=group, author=annotator)
    group_add_images(group=group, images=_images(png_factory, range(70, 71)))
    draft.refresh_from_db()
    assert draft.version == 1 and draft.status == Caption.Status.DRAFT
