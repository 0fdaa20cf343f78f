"""A reviewer edits a draft with the keyboard (E), approves it, and the history shows it."""

from __future__ import annotations

from typing import Any

import pytest

from captions.models import Caption
from captions.services import caption_create
from curation.services import group_create
from tests.e2e.support import expect, store_images

pytestmark = pytest.mark.e2e

DRAFT = "A {Animal} peering out from behind a {Object}."
EDITED = "A {Animal} peeking out from behind a {Object}."


def test_a_reviewer_edits_then_approves_a_draft_and_the_history_records_it(
    open_page: Any, annotator: Any, reviewer: Any, png_factory: Any
) -> None:
    group = group_create(title="Peeking out", images=store_images(png_factory, 3), user=annotator)
    caption = caption_create(text=DRAFT, group=group, author=annotator)
    page = open_page(reviewer.username)

    page.get_by_role("link", name="Review", exact=True).click()
    expect(page.get_by_role("heading", name="Drafts to review")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=DRAFT)
    expect(row).to_contain_text("group “Peeking out”")
    expect(row).to_contain_text(annotator.username)
    row.get_by_role("link", name=DRAFT).click()
    page.wait_for_load_state()  # keys are heard once the page's deferred script has run

    expect(page.get_by_role("heading", name="Review: group “Peeking out”")).to_be_visible()
    expect(page.get_by_label("Images").get_by_role("img")).to_have_count(3)
    expect(page.locator(".draft-text")).to_have_text(DRAFT)
    expect(page.locator("#draft-title")).to_contain_text("draft")
    expect(page.locator("#draft-title")).to_contain_text(f"v1 · human · by {annotator.username}")

    # E opens the edit box with the focus in the text.
    page.keyboard.press("Shift+E")
    text = page.get_by_label("Text", exact=True)
    expect(text).to_be_focused()
    expect(text).to_have_value(DRAFT)
    text.fill(EDITED)
    page.get_by_role("button", name="Save and approve").click()

    # The queue was emptied by this approval: back to it, with a confirmation.
    expect(page.get_by_text("Approved.", exact=True)).to_be_visible()
    expect(page.get_by_text("No drafts waiting.")).to_be_visible()
    caption.refresh_from_db()
    assert (caption.status, caption.text, caption.reviewer) == ("approved", EDITED, reviewer)
    actions = list(
        caption.revisions.order_by("version").values_list("version", "action", "actor__username")
    )
    assert actions == [
        (1, "create", annotator.username),
        (2, "edit", reviewer.username),
        (3, "approve", reviewer.username),
    ]

    # The caption's page shows the approved text, the change against the draft and the history.
    page.goto(f"/review/{caption.pk}/")
    expect(page.locator("#draft-title .badge")).to_have_text(Caption.Status.APPROVED)
    expect(page.locator(".draft-text")).to_have_text(EDITED)
    changes = page.get_by_label("Changes against the original draft")
    expect(changes.locator("del")).to_have_text("peering")
    expect(changes.locator("ins")).to_have_text("peeking")
    history = page.locator(".history li")
    expect(history).to_have_count(3)
    expect(history.nth(0)).to_contain_text(f"v3 approve by {reviewer.username}")
    expect(history.nth(1)).to_contain_text(f"v2 edit by {reviewer.username}")
    expect(history.nth(1)).to_contain_text(EDITED)
    expect(history.nth(2)).to_contain_text(f"v1 create by {annotator.username}")
    expect(history.nth(2)).to_contain_text(DRAFT)

    # The group list shows it as the group's approved caption.
    page.get_by_role("link", name="Groups", exact=True).click()
    expect(page.locator(".group-row").filter(has_text="Peeking out")).to_contain_text(
        f"approved: “{EDITED}”"
    )
