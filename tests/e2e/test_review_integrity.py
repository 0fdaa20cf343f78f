"""In a browser: an approved caption changes only through review - an edit becomes a new
draft, and a member removed from the group sends the caption back with the change shown."""

from __future__ import annotations

from typing import Any

import pytest

from captions.models import Caption
from captions.services import caption_approve, caption_create
from curation.services import group_create
from tests.e2e.support import SCREENSHOTS, expect, store_images

pytestmark = pytest.mark.e2e

APPROVED = "A {Animal} peering out from behind a {Object}."
REVISED = "A {Animal} peeking out from behind a {Object}."


@pytest.fixture
def approved(annotator: Any, reviewer: Any, make_user: Any, png_factory: Any) -> Caption:
    group = group_create(title="Peeking out", images=store_images(png_factory, 3), user=annotator)
    writer = make_user("writer", "annotator")
    return caption_approve(
        caption=caption_create(text=APPROVED, group=group, author=writer), reviewer=reviewer
    )


def test_editing_an_approved_caption_saves_a_new_draft_and_keeps_the_approved_text(
    open_page: Any, annotator: Any, approved: Caption
) -> None:
    page = open_page(annotator.username)
    page.goto(f"/groups/{approved.group_id}/caption/")
    expect(page.locator("#approved-note")).to_be_visible()
    page.get_by_label("Caption (approved", exact=False).fill(REVISED)
    page.get_by_role("button", name="Save as a new draft").click()

    expect(page.get_by_text("Saved as a new draft for review")).to_be_visible()
    expect(page.get_by_label("Caption (draft", exact=False)).to_have_value(REVISED)
    approved.refresh_from_db()
    assert (approved.status, approved.text) == ("approved", APPROVED)
    draft = Caption.objects.get(status="draft")
    assert (draft.text, draft.author) == (REVISED, annotator)


def test_a_removed_member_sends_the_caption_back_with_the_change_shown(
    open_page: Any, annotator: Any, make_user: Any, approved: Caption
) -> None:
    gone = approved.group.members.order_by("position").first().image
    page = open_page(annotator.username)
    page.goto(f"/groups/{approved.group_id}/")
    page.get_by_role("button", name=f"Remove image {gone.pk} from the group").click()
    expect(page.get_by_role("button", name=f"Remove image {gone.pk} from the group")).to_have_count(
        0
    )

    second = make_user("rev2", "reviewer")
    review = open_page(second.username)
    review.get_by_role("link", name="Review", exact=True).click()
    review.get_by_role("row").filter(has_text=APPROVED).get_by_role("link", name=APPROVED).click()
    section = review.locator("#members-change")
    expect(section).to_contain_text("the group's images changed since this caption was approved")
    expect(section.get_by_role("img", name=f"removed image {gone.pk}")).to_be_visible()
    expect(review.get_by_label("Images", exact=True).get_by_role("img")).to_have_count(2)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    review.screenshot(path=str(SCREENSHOTS / "review-members-changed.png"), full_page=True)

    review.get_by_role("button", name="Approve").click()
    expect(review.get_by_text("Approved.", exact=True)).to_be_visible()
    approved.refresh_from_db()
    assert approved.status == "approved" and approved.reviewer == second
