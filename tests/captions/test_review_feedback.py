"""Rejected captions go back to their authors with a reason and a comment; a refused approval
keeps the reviewer's text; the review queue shows thumbnails and each draft's lint status."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from captions import selectors, services
from captions.models import REJECT_COMMENT_MAX_CHARS, Caption, CaptionRevision
from curation.intake import normalise_image
from curation.services import group_create, image_store

pytestmark = pytest.mark.django_db

DRAFT = "A {Object} inside a {Object}."
REVISED = "A {Object} nested inside a larger {Object}."
COMMENT = "Say that the outer one is the larger."


@pytest.fixture
def group(png_factory: Any) -> Any:
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(2)]
    return group_create(title="Nested", images=images)


@pytest.fixture
def rejected(group: Any, annotator: Any, reviewer: Any) -> Caption:
    draft = services.caption_create(text=DRAFT, group=group, author=annotator)
    return services.caption_reject(
        caption=draft, reviewer=reviewer, reason="too-vague", comment=COMMENT
    )


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_rejection_stores_the_reason_and_the_comment(
    group: Any, annotator: Any, reviewer: Any
) -> None:
    draft = services.caption_create(text=DRAFT, group=group, author=annotator)
    response = _client(reviewer).post(
        reverse("review_reject", args=[draft.pk]),
        {"version": draft.version, "reason": "wrong-logic", "comment": f"  {COMMENT}  "},
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.status, draft.reject_reason, draft.reject_comment) == (
        Caption.Status.REJECTED,
        "wrong-logic",
        COMMENT,
    )
    revision = draft.revisions.get(action=CaptionRevision.Action.REJECT)
    assert (revision.reason, revision.details) == ("wrong-logic", {"comment": COMMENT})


def test_a_comment_over_the_limit_is_refused_and_nothing_is_rejected(
    group: Any, annotator: Any, reviewer: Any
) -> None:
    draft = services.caption_create(text=DRAFT, group=group, author=annotator)
    too_long = "x" * (REJECT_COMMENT_MAX_CHARS + 1)
    response = _client(reviewer).post(
        reverse("review_reject", args=[draft.pk]),
        {"version": draft.version, "reason": "other", "comment": too_long},
        follow=True,
    )
    body = response.content.decode()
    assert "Not rejected: Ensure this value has at most 1000 characters" in body
    draft.refresh_from_db()
    assert draft.status == Caption.Status.DRAFT
    with pytest.raises(ValueError, match="under 1000 characters"):
        services.caption_reject(caption=draft, reviewer=reviewer, reason="other", comment=too_long)


def test_the_editor_shows_the_rejected_text_who_returned_it_why_and_the_history(
    rejected: Caption, group: Any, annotator: Any
) -> None:
    body = _client(annotator).get(reverse("edit_group_caption", args=[group.pk])).content.decode()
    assert "<strong>Returned by rev</strong>" in body
    assert f'<span class="reason">too-vague</span> — <q class="comment">{COMMENT}</q>' in body
    assert f">{DRAFT}</textarea>" in body
    assert "Send back to review" in body and "Caption (new draft)" not in body
    assert "v2 reject by rev" in body and f"(too-vague) — “{COMMENT}”" in body


def test_revising_a_rejected_caption_sends_it_back_to_review(
    rejected: Caption, annotator: Any
) -> None:
    response = _client(annotator).post(
        reverse("caption_save", args=[rejected.pk]), {"text": REVISED, "version": rejected.version}
    )
    assert response.status_code == 302
    rejected.refresh_from_db()
    assert (rejected.status, rejected.text, rejected.version) == (Caption.Status.DRAFT, REVISED, 3)
    assert (rejected.reviewer, rejected.reject_reason, rejected.reject_comment) == (None, "", "")
    assert list(selectors.review_queue()) == [rejected]
    assert list(selectors.returned_to(annotator)) == []
    last = rejected.revisions.order_by("-version").first()
    assert last is not None
    assert (last.action, last.text_before, last.text_after, last.reason) == (
        CaptionRevision.Action.EDIT,
        DRAFT,
        REVISED,
        "revised after rejection",
    )


def test_the_same_text_cannot_be_sent_back_to_review(rejected: Caption, annotator: Any) -> None:
    response = _client(annotator).post(
        reverse("caption_save", args=[rejected.pk]),
        {"text": DRAFT, "version": rejected.version},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    assert "change the text before sending it back to review" in response.content.decode()
    rejected.refresh_from_db()
    assert rejected.status == Caption.Status.REJECTED


def test_the_returned_list_shows_only_the_authors_captions_not_yet_followed_up(
    rejected: Caption, annotator: Any, reviewer: Any, make_user: Any, png_factory: Any
) -> None:
    other_author = make_user("other", "annotator")
    image = image_store(normalised=normalise_image(png_factory(7))).image
    theirs = services.caption_create(text="A {Object}.", image=image, author=other_author)
    services.caption_reject(caption=theirs, reviewer=reviewer, reason="other")
    # A rejection already followed by a newer caption of the same image is not waiting.
    image2 = image_store(normalised=normalise_image(png_factory(8))).image
    old = services.caption_create(text="Two {Object}s.", image=image2, author=annotator)
    services.caption_reject(caption=old, reviewer=reviewer, reason="malformed")
    services.caption_create(text="Two {Object}s apart.", image=image2, author=reviewer)

    assert list(selectors.returned_to(annotator)) == [rejected]
    body = _client(annotator).get(reverse("returned_captions")).content.decode()
    editor = reverse("edit_group_caption", args=[rejected.group_id])
    assert f'<a href="{editor}">{DRAFT}</a>' in body
    for shown in ("too-vague", COMMENT, "<td>rev</td>", "group “Nested”"):
        assert shown in body
    assert "Two {Object}s." not in body and "A {Object}." not in body


def test_the_overview_counts_the_captions_returned_to_the_user(
    rejected: Caption, annotator: Any, reviewer: Any
) -> None:
    mine = _client(annotator).get("/").content.decode()
    assert '<span class="figure">1</span> returned to you' in mine
    assert reverse("returned_captions") in mine
    theirs = _client(reviewer).get("/").content.decode()
    assert '<span class="figure">0</span> returned to you' in theirs


def test_a_refused_approval_keeps_the_reviewers_text_and_shows_why(
    group: Any, annotator: Any, reviewer: Any
) -> None:
    draft = services.caption_create(text=DRAFT, group=group, author=annotator)
    typed = "A {Object} inside a {Object"
    response = _client(reviewer).post(
        reverse("review_approve", args=[draft.pk]), {"version": draft.version, "text": typed}
    )
    assert response.status_code == 422
    body = response.content.decode()
    assert f">{typed}</textarea>" in body
    assert "Not approved: unbalanced braces" in body
    assert '<details id="edit-approve" open>' in body
    draft.refresh_from_db()
    assert (draft.status, draft.text, draft.version) == (Caption.Status.DRAFT, DRAFT, 1)


def test_a_too_long_approval_edit_is_kept_too(group: Any, annotator: Any, reviewer: Any) -> None:
    draft = services.caption_create(text=DRAFT, group=group, author=annotator)
    typed = "A {Object} " + "very " * 500
    response = _client(reviewer).post(
        reverse("review_approve", args=[draft.pk]), {"version": draft.version, "text": typed}
    )
    assert response.status_code == 422
    assert "at most 2000 characters" in response.content.decode()
    assert typed.strip() in response.content.decode()


def _drafts(png_factory: Any, annotator: Any, count: int, seed: int) -> None:
    texts = ["A {Object} inside a {Object}.", "A red {Object}.", "A {thing} here."]
    for n in range(count):
        images = [
            image_store(normalised=normalise_image(png_factory(seed + 3 * n + k))).image
            for k in range(3)
        ]
        group = group_create(title=f"g{seed + n}", images=images)
        services.caption_create(text=texts[n % 3], group=group, author=annotator)


def test_the_review_queue_shows_thumbnails_and_lint_status_in_a_fixed_number_of_queries(
    png_factory: Any, annotator: Any, reviewer: Any, django_assert_max_num_queries: Any
) -> None:
    client = _client(reviewer)
    _drafts(png_factory, annotator, 3, seed=0)
    with django_assert_max_num_queries(8) as few:
        body = client.get(reverse("review_queue")).content.decode()
    assert body.count('loading="lazy"') == 9
    assert body.count('<span class="ok">ok</span>') == 1
    assert body.count('<span class="warning">1 warning</span>') == 1
    assert body.count('<span class="error">1 error</span>') == 1

    _drafts(png_factory, annotator, 6, seed=100)
    with django_assert_max_num_queries(len(few.captured_queries)):
        body = client.get(reverse("review_queue")).content.decode()
    assert body.count('loading="lazy"') == 27


def test_a_long_review_queue_shows_its_oldest_drafts_and_says_more_wait(
    reviewer: Any, annotator: Any, png_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from captions import views

    monkeypatch.setattr(views, "_QUEUE_ROWS", 2)
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(3)]
    drafts = [
        services.caption_create(text=f"Draft {n} {{Object}}.", image=image, author=annotator)
        for n, image in enumerate(images)
    ]
    page = _client(reviewer).get(reverse("review_queue"))
    shown = [row["caption"] for row in page.context["rows"]]
    assert shown == drafts[:2]
    assert "The oldest 2 drafts; more wait" in page.content.decode()
