"""The caption editor: live lint while typing, autosave, and a stale tab's save refused
(409) with both texts shown for a merge."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest

from captions.models import Caption
from captions.services import caption_create
from curation.services import group_create
from tests.e2e.support import Page, expect, saved_version, store_images

pytestmark = pytest.mark.e2e

LEAKY = "A red cat peering out from behind a {Object}."
FIXED = "A {Animal} peering out from behind a {Object}."


@pytest.fixture
def group(png_factory: Any, annotator: Any) -> Any:
    return group_create(title="Peeking out", images=store_images(png_factory, 3), user=annotator)


def _retype(page: Page, text: str) -> None:
    """Replace the caption by typing it, as a person does (key by key, so keyup fires)."""
    page.wait_for_load_state()  # htmx listens for keyup once its deferred script has run
    area = page.locator("#caption-text")
    area.focus()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    area.press_sequentially(text)


def _is_save_of(text: str) -> Any:
    def check(response: Any) -> bool:
        if "/save/" not in response.url or response.request.method != "POST":
            return False
        return parse_qs(response.request.post_data or "").get("text") == [text]

    return check


def test_the_lint_warns_live_and_the_fixed_caption_is_autosaved(
    open_page: Any, annotator: Any, group: Any
) -> None:
    page = open_page(annotator.username)
    page.goto(f"/groups/{group.pk}/")
    page.get_by_role("link", name="Caption", exact=True).click()
    page.wait_for_load_state()  # htmx listens for keyup once its deferred script has run
    expect(
        page.get_by_role("heading", name="Anonymous caption of the group “Peeking out”")
    ).to_be_visible()
    expect(page.get_by_label("Images").get_by_role("img")).to_have_count(3)

    # First draft: created with the form (there is nothing to autosave into yet).
    expect(page.get_by_label("Caption (new draft)")).to_be_focused()
    page.keyboard.type("A {Animal} behind a {Object}.")
    lint = page.locator("#lint")
    expect(lint).to_contain_text("✓ No problems found.")
    page.get_by_role("button", name="Create the draft").click()
    expect(page.get_by_text("Caption saved.")).to_be_visible()
    expect(page.get_by_label("Caption (draft, version 1)")).to_have_value(
        "A {Animal} behind a {Object}."
    )
    caption = Caption.objects.get(group=group)
    assert (caption.status, caption.version, caption.author) == ("draft", 1, annotator)

    # Naming a colour and an animal: the warnings appear while typing.
    _retype(page, LEAKY)
    expect(lint.locator("li.warning")).to_have_count(2)
    expect(lint).to_contain_text("“red” names concrete content")
    expect(lint).to_contain_text("“cat” names concrete content")
    expect(lint.locator("mark.leak")).to_have_text(["red", "cat"])
    expect(lint).not_to_contain_text("No problems found")

    # Fixed: the warnings go away, and the autosave stores the fixed text.
    with page.expect_response(_is_save_of(FIXED)) as saved:
        _retype(page, FIXED)
        expect(lint).to_contain_text("✓ No problems found.")
        expect(lint.locator("li.warning")).to_have_count(0)
        expect(lint.locator("mark.placeholder")).to_have_text(["{Animal}", "{Object}"])
    assert saved.value.status == 200
    status = page.locator("#save-status")
    expect(status).to_contain_text("Saved version")
    caption.refresh_from_db()
    assert caption.text == FIXED
    assert saved_version(status.inner_text()) == caption.version >= 2
    expect(page.locator("#version-label")).to_have_text(str(caption.version))
    assert caption.revisions.latest("version").text_after == FIXED


def test_a_stale_tab_is_refused_shown_both_texts_and_saves_the_merge(
    open_page: Any, annotator: Any, group: Any
) -> None:
    caption = caption_create(text="A {Animal} behind a {Object}.", group=group, author=annotator)
    tab_a = open_page(annotator.username)
    tab_b = tab_a.context.new_page()
    for tab in (tab_a, tab_b):
        tab.goto(f"/groups/{group.pk}/caption/")
        expect(tab.get_by_label("Caption (draft, version 1)")).to_have_value(caption.text)

    theirs = "A {Animal} peering out from behind a {Object}."
    with tab_a.expect_response(_is_save_of(theirs)):
        _retype(tab_a, theirs)
    expect(tab_a.locator("#save-status")).to_contain_text("Saved version 2")
    caption.refresh_from_db()
    assert (caption.text, caption.version) == (theirs, 2)

    # Tab B still thinks it edits version 1: its save is refused, nothing is overwritten.
    mine = "A {Animal} hiding behind a {Object}."
    with tab_b.expect_response(_is_save_of(mine)) as refused:
        _retype(tab_b, mine)
        tab_b.keyboard.press("Control+S")
    assert refused.value.status == 409
    panel = tab_b.get_by_role("alert").filter(
        has_text="Someone changed this caption while you were editing"
    )
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("Your text was not saved, and nothing was overwritten.")
    expect(panel.get_by_test_id("theirs")).to_have_text(theirs)
    expect(panel.get_by_test_id("mine")).to_have_text(mine)
    expect(panel.locator("del")).to_contain_text("peering out from")
    expect(panel.locator("ins")).to_contain_text("hiding")
    caption.refresh_from_db()
    assert (caption.text, caption.version) == (theirs, 2)

    # The merged text goes in from the panel and lands as the next version.
    # Both inserted words at the same place: the merge keeps theirs, then yours.
    merged = "A {Animal} peering out from hiding behind a {Object}."
    merged_box = panel.get_by_label("Merged text")
    expect(merged_box).to_have_value(merged)
    panel.get_by_role("button", name="Save the merged text").click()
    expect(tab_b.get_by_text("Caption saved.")).to_be_visible()
    expect(tab_b.get_by_label("Caption (draft, version 3)")).to_have_value(merged)
    caption.refresh_from_db()
    assert (caption.text, caption.version) == (merged, 3)
    history = list(caption.revisions.order_by("version").values_list("version", "text_after"))
    assert history == [(1, "A {Animal} behind a {Object}."), (2, theirs), (3, merged)]
