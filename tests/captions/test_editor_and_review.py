"""Caption editor (lint, autosave, 409 on stale saves, presence) and review."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from captions import services
from captions.lint import lint_caption
from captions.models import Caption, CaptionRevision
from captions.selectors import review_queue as services_review_queue
from curation.intake import normalise_image
from curation.services import group_create, image_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def group(png_factory: Any) -> Any:
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(2)]
    return group_create(title="g", images=images)


@pytest.fixture
def draft(group: Any, annotator: Any) -> Caption:
    return services.caption_create(
        text="A {Object} inside a {Object}.", group=group, author=annotator
    )


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_lint_explains_leaks_bad_placeholders_and_length(settings: Any) -> None:
    result = lint_caption("A red cat behind a {thing} and a {Wizard}.")
    messages = " ".join(f.message for f in result.findings)
    assert "“red” names concrete content" in messages and "“cat”" in messages
    assert [f.level for f in result.findings if "{thing}" in f.message] == ["error"]
    assert [f.level for f in result.findings if "{Wizard}" in f.message] == ["warning"]
    kinds = {s.text: s.kind for s in result.segments}
    assert kinds["red"] == "leak" and kinds["{thing}"] == "bad-placeholder"
    assert lint_caption("A {Animal} peering out from behind a {Object}.").ok
    settings.RELSIM_CAPTION_MAX_CHARS = 20
    assert lint_caption("A {Object} that is far too long to keep.").errors
    assert "No placeholder" in lint_caption("Nothing varies here.").findings[0].message
    assert "unbalanced" in lint_caption("A {Object").errors[0].message


def test_the_lint_endpoint_renders_the_highlighted_preview(annotator: Any) -> None:
    response = _client(annotator).post(reverse("caption_lint"), {"text": "A {Object} and a dog."})
    body = response.content.decode()
    assert '<mark class="placeholder">{Object}</mark>' in body
    assert '<mark class="leak">dog</mark>' in body


def test_an_autosave_returns_the_new_version(draft: Caption, annotator: Any) -> None:
    client = _client(annotator)
    response = client.post(
        reverse("caption_save", args=[draft.pk]),
        {"text": "A {Object} within a {Object}.", "version": draft.version},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert 'id="caption-version" value="2"' in response.content.decode()
    draft.refresh_from_db()
    assert draft.text == "A {Object} within a {Object}." and draft.version == 2


def test_a_stale_save_gets_409_with_both_texts_and_overwrites_nothing(
    draft: Caption, annotator: Any, reviewer: Any
) -> None:
    first, second = _client(annotator), _client(reviewer)
    url = reverse("caption_save", args=[draft.pk])
    assert first.post(url, {"text": "Theirs: a {Object}.", "version": 1}).status_code == 302
    response = second.post(url, {"text": "Mine: a {Shape}.", "version": 1})
    assert response.status_code == 409
    body = response.content.decode()
    assert "Theirs: a {Object}." in body and "Mine: a {Shape}." in body
    draft.refresh_from_db()
    assert draft.text == "Theirs: a {Object}." and draft.version == 2
    merged = second.post(url, {"text": "Merged: a {Object}.", "version": 2})
    assert merged.status_code == 302
    draft.refresh_from_db()
    assert draft.text == "Merged: a {Object}." and draft.version == 3
    assert CaptionRevision.objects.filter(caption=draft, action="edit").count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_saves_from_one_version_let_exactly_one_through(
    make_user: Any, png_factory: Any
) -> None:
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(2)]
    caption = services.caption_create(
        text="Start {Object}.", group=group_create(title="g", images=images)
    )
    users = [make_user(f"ed{n}", "annotator") for n in range(2)]
    barrier = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def save(user: Any, text: str) -> None:
        try:
            barrier.wait()
            services.caption_edit(caption=caption, text=text, based_on_version=1, editor=user)
            outcome[user.username] = "saved"
        except services.StaleCaption:
            outcome[user.username] = "stale"
        finally:
            connection.close()

    threads = [
        threading.Thread(target=save, args=(u, f"By {u.username} a {{Object}}.")) for u in users
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcome.values()) == ["saved", "stale"]
    caption.refresh_from_db()
    winner = next(name for name, result in outcome.items() if result == "saved")
    assert caption.text == f"By {winner} a {{Object}}." and caption.version == 2


def test_the_editor_shows_who_else_is_editing(
    draft: Caption, annotator: Any, reviewer: Any
) -> None:
    _client(reviewer).get(reverse("edit_group_caption", args=[draft.group_id]))
    response = _client(annotator).post(reverse("caption_presence", args=[draft.pk]))
    assert "rev is editing" in response.content.decode()
    alone = _client(reviewer).post(reverse("caption_presence", args=[draft.pk]))
    assert "ann is editing" in alone.content.decode()


def test_a_first_draft_is_created_from_the_editor(group: Any, annotator: Any) -> None:
    client = _client(annotator)
    response = client.post(
        reverse("caption_create"), {"text": "A {Object} on a {Object}.", "group": group.pk}
    )
    assert response.status_code == 302
    caption = Caption.objects.get(group=group)
    assert caption.author == annotator and caption.status == Caption.Status.DRAFT
    bad = client.post(reverse("caption_create"), {"text": "A {Object", "group": group.pk})
    assert bad.status_code == 422 and b"unbalanced" in bad.content


def test_reviewers_edit_then_approve_and_see_the_diff(draft: Caption, reviewer: Any) -> None:
    client = _client(reviewer)
    page = client.get(reverse("review_detail", args=[draft.pk]))
    assert page.status_code == 200
    response = client.post(
        reverse("review_approve", args=[draft.pk]),
        {"version": draft.version, "text": "A {Object} nested inside a {Object}."},
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == Caption.Status.APPROVED and draft.reviewer == reviewer
    assert draft.text == "A {Object} nested inside a {Object}."
    actions = list(draft.revisions.order_by("version").values_list("action", flat=True))
    assert actions == ["create", "edit", "approve"]
    diff = client.get(reverse("review_detail", args=[draft.pk])).context["diff"]
    assert ("ins", "nested") in diff


def test_authors_do_not_approve_their_own_captions_unless_allowed(
    group: Any, reviewer: Any, settings: Any
) -> None:
    own = services.caption_create(text="Mine {Object}.", group=group, author=reviewer)
    client = _client(reviewer)
    client.post(reverse("review_approve", args=[own.pk]), {"version": own.version})
    own.refresh_from_db()
    assert own.status == Caption.Status.DRAFT
    settings.RELSIM_ALLOW_SELF_APPROVAL = True
    client.post(reverse("review_approve", args=[own.pk]), {"version": own.version})
    own.refresh_from_db()
    assert own.status == Caption.Status.APPROVED


def test_rejection_needs_a_reason_code(draft: Caption, reviewer: Any) -> None:
    client = _client(reviewer)
    client.post(
        reverse("review_reject", args=[draft.pk]), {"version": draft.version, "reason": "nope"}
    )
    draft.refresh_from_db()
    assert draft.status == Caption.Status.DRAFT
    client.post(
        reverse("review_reject", args=[draft.pk]),
        {"version": draft.version, "reason": "leaks-content"},
    )
    draft.refresh_from_db()
    assert draft.status == Caption.Status.REJECTED and draft.reject_reason == "leaks-content"


def test_approving_on_a_stale_version_is_a_conflict(
    draft: Caption, reviewer: Any, annotator: Any
) -> None:
    services.caption_edit(
        caption=draft, text="Changed {Object}.", based_on_version=1, editor=annotator
    )
    response = _client(reviewer).post(reverse("review_approve", args=[draft.pk]), {"version": 1})
    assert response.status_code == 409
    draft.refresh_from_db()
    assert draft.status == Caption.Status.DRAFT


def test_bulk_approve_asks_for_confirmation_and_skips_own_drafts(
    group: Any, annotator: Any, reviewer: Any, png_factory: Any
) -> None:
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(10, 12)]
    other = group_create(title="h", images=images)
    theirs = services.caption_create(text="Theirs {Object}.", group=group, author=annotator)
    own = services.caption_create(text="Own {Object}.", group=other, author=reviewer)
    client = _client(reviewer)
    ids = f"{theirs.pk},{own.pk}"
    confirm = client.post(reverse("review_bulk_approve"), {"captions": ids})
    assert confirm.status_code == 200 and b"Yes, approve them" in confirm.content
    theirs.refresh_from_db()
    assert theirs.status == Caption.Status.DRAFT
    client.post(reverse("review_bulk_approve"), {"captions": ids, "confirmed": "on"})
    theirs.refresh_from_db()
    own.refresh_from_db()
    assert theirs.status == Caption.Status.APPROVED and own.status == Caption.Status.DRAFT


def test_approving_another_caption_supersedes_the_old_one_with_a_revision(
    group: Any, annotator: Any, reviewer: Any
) -> None:
    first = services.caption_create(text="First {Object}.", group=group, author=annotator)
    services.caption_approve(caption=first, reviewer=reviewer)
    second = services.caption_create(text="Second {Object}.", group=group, author=annotator)
    services.caption_approve(caption=second, reviewer=reviewer)
    first.refresh_from_db()
    assert first.status == Caption.Status.SUPERSEDED
    assert (
        first.revisions.order_by("-version").first().reason == f"replaced by caption #{second.pk}"
    )
    assert first not in services_review_queue()
