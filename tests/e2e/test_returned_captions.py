"""A reviewer returns a draft with a reason and a comment; its author finds it, revises it and
sends it back to review."""

from __future__ import annotations

from typing import Any

import pytest

from captions.models import Caption
from captions.services import caption_create
from curation.services import group_create
from tests.e2e.support import expect, store_images

pytestmark = pytest.mark.e2e

DRAFT = "A {Object} inside a {Object}."
REVISED = "A {Object} nested inside a larger {Object}."
COMMENT = "Say that the outer one is the larger."


def test_a_returned_caption_reaches_its_author_who_revises_it_back_into_review(
    open_page: Any, annotator: Any, reviewer: Any, png_factory: Any
) -> None:
    group = group_create(title="Nested", images=store_images(png_factory, 2), user=annotator)
    caption = caption_create(text=DRAFT, group=group, author=annotator)

    review = open_page(reviewer.username)
    review.goto(f"/review/{caption.pk}/")
    review.get_by_label("Reason").select_option("too-vague")
    review.get_by_label("Comment for the author").fill(COMMENT)
    review.get_by_role("button", name="Reject").click()
    expect(review.get_by_text("Rejected.", exact=True)).to_be_visible()

    page = open_page(annotator.username)
    returned = page.locator("#returned-count")
    expect(returned).to_have_text("1 returned to you")
    returned.click()
    expect(page.get_by_role("heading", name="Captions returned to you")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=DRAFT)
    expect(row).to_contain_text("too-vague")
    expect(row).to_contain_text(COMMENT)
    expect(row).to_contain_text(reviewer.username)
    row.get_by_role("link", name=DRAFT).click()

    note = page.get_by_role("note", name="Returned")
    expect(note).to_contain_text(f"Returned by {reviewer.username}")
    expect(note).to_contain_text(f"too-vague — {COMMENT}")
    text = page.locator("#caption-text")
    expect(text).to_have_value(DRAFT)
    page.get_by_text("History").click()
    expect(page.locator(".history li").first).to_contain_text(f"v2 reject by {reviewer.username}")

    # Sending the same text back is refused; a revision goes back to review.
    page.get_by_role("button", name="Send back to review").click()
    expect(page.get_by_text("change the text before sending it back to review")).to_be_visible()
    page.goto(f"/groups/{group.pk}/caption/")
    page.locator("#caption-text").fill(REVISED)
    page.get_by_role("button", name="Send back to review").click()
    expect(page.get_by_text("Revised and sent back to review.")).to_be_visible()
    caption.refresh_from_db()
    assert (caption.status, caption.text) == (Caption.Status.DRAFT, REVISED)

    page.goto("/")
    expect(page.locator("#returned-count")).to_have_text("0 returned to you")
    review.goto("/review/")
    expect(review.get_by_role("row").filter(has_text=REVISED)).to_be_visible()
