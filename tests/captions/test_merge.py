"""The three-way merge of two edits of one caption, and the 409 page that offers it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from captions import services
from captions.merge import Conflict, merge_words
from captions.models import Caption
from curation.intake import normalise_image
from curation.services import group_create, image_store

BASE = "A {Animal} behind a {Object}."


def test_non_overlapping_edits_are_both_kept() -> None:
    result = merge_words(
        "A {Animal} behind a {Object}.",
        "A {Animal} peering out from behind a {Object}.",
        "A {Animal} behind a large {Object}.",
    )
    assert result.text == "A {Animal} peering out from behind a large {Object}."
    assert result.conflicts == []


def test_identical_edits_are_applied_once() -> None:
    result = merge_words(BASE, "A {Animal} under a {Object}.", "A {Animal} under a {Object}.")
    assert result.text == "A {Animal} under a {Object}."
    assert result.conflicts == []


def test_different_edits_of_the_same_words_are_a_conflict_keeping_theirs_then_yours() -> None:
    result = merge_words(BASE, "A {Animal} under a {Object}.", "A {Animal} beside a {Object}.")
    assert result.text == "A {Animal} under beside a {Object}."
    assert result.conflicts == [Conflict(base="behind", theirs="under", yours="beside")]
    assert result.pieces == [("A {Animal}", False), ("under beside", True), ("a {Object}.", False)]


def test_different_insertions_at_the_same_place_are_a_conflict() -> None:
    theirs = "A {Animal} peering out from behind a {Object}."
    result = merge_words(BASE, theirs, "A {Animal} hiding behind a {Object}.")
    assert result.text == "A {Animal} peering out from hiding behind a {Object}."
    assert result.conflicts == [Conflict(base="", theirs="peering out from", yours="hiding")]


def test_insertions_at_different_places_are_both_kept() -> None:
    result = merge_words("a b c", "X a b c", "a b c Y")
    assert (result.text, result.conflicts) == ("X a b c Y", [])


def test_deletions_on_both_sides_are_both_applied() -> None:
    result = merge_words("a b c d e", "a c d e", "a b c d")
    assert (result.text, result.conflicts) == ("a c d", [])


def test_a_deletion_against_a_change_of_the_same_word_is_a_conflict() -> None:
    result = merge_words("a b c", "a c", "a Y c")
    assert result.text == "a Y c"
    assert result.conflicts == [Conflict(base="b", theirs="", yours="Y")]


def test_an_insertion_inside_a_span_the_other_side_replaced_is_a_conflict() -> None:
    result = merge_words("a b c d", "a X d", "a b Y c d")
    assert result.text == "a X b Y c d"
    assert len(result.conflicts) == 1


def test_one_sided_edits_and_no_edits_pass_through() -> None:
    assert merge_words(BASE, BASE, BASE).text == BASE
    assert merge_words(BASE, BASE, "A {Animal} under a {Object}.").text == (
        "A {Animal} under a {Object}."
    )
    assert merge_words(BASE, "A {Animal} under a {Object}.", BASE).text == (
        "A {Animal} under a {Object}."
    )


# --- the 409 page ------------------------------------------------------------------------


@pytest.fixture
def draft(png_factory: Any, annotator: Any) -> Caption:
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(2)]
    group = group_create(title="g", images=images)
    return services.caption_create(text=BASE, group=group, author=annotator)


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_a_stale_save_gets_409_with_base_theirs_yours_and_the_merge_pre_filled(
    draft: Caption, annotator: Any, reviewer: Any
) -> None:
    url = reverse("caption_save", args=[draft.pk])
    theirs = "A {Animal} peering out from behind a {Object}."
    mine = "A {Animal} behind a large {Object}."
    assert _client(annotator).post(url, {"text": theirs, "version": 1}).status_code == 302
    response = _client(reviewer).post(url, {"text": mine, "version": 1})
    assert response.status_code == 409
    assert response.context["base"] == BASE
    assert (response.context["theirs"], response.context["mine"]) == (theirs, mine)
    merged = "A {Animal} peering out from behind a large {Object}."
    assert response.context["merge"].text == merged
    body = response.content.decode()
    assert f'<p class="base" data-testid="base">{BASE}</p>' in body
    assert f'name="text" rows="3" maxlength="2000">{merged}</textarea>' in body
    assert '<input type="hidden" name="version" value="2">' in body
    assert "changed by both of you" not in body
    draft.refresh_from_db()
    assert (draft.text, draft.version) == (theirs, 2)


@pytest.mark.django_db
def test_saving_the_merge_against_the_current_version_succeeds(
    draft: Caption, annotator: Any, reviewer: Any
) -> None:
    url = reverse("caption_save", args=[draft.pk])
    _client(annotator).post(url, {"text": "A {Animal} under a {Object}.", "version": 1})
    second = _client(reviewer)
    response = second.post(url, {"text": "A {Animal} beside a {Object}.", "version": 1})
    assert response.status_code == 409
    body = response.content.decode()
    assert "1 place changed by both of you" in body
    assert '<mark class="conflict">under beside</mark>' in body
    merged = response.context["merge"].text
    saved = second.post(url, {"text": merged, "version": 2})
    assert saved.status_code == 302
    draft.refresh_from_db()
    assert (draft.text, draft.version) == ("A {Animal} under beside a {Object}.", 3)


@pytest.mark.django_db
def test_a_stale_autosave_puts_the_panel_below_the_form_and_stops_the_editor(
    draft: Caption, annotator: Any, reviewer: Any
) -> None:
    url = reverse("caption_save", args=[draft.pk])
    _client(annotator).post(url, {"text": "A {Animal} under a {Object}.", "version": 1})
    response = _client(reviewer).post(
        url, {"text": "A {Animal} behind a {Shape}.", "version": 1}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 409
    assert response["HX-Retarget"] == "#caption-form"
    assert response["HX-Reswap"] == "afterend"
    assert response["HX-Trigger-After-Swap"] == "caption-conflict"
    body = response.content.decode()
    assert 'id="merge-form"' in body and 'id="save-status"' in body
    assert "A {Animal} under a {Shape}.</textarea>" in body
