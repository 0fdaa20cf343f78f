"""The merge page: a stale tab's save opens a three-way merge with both edits kept, the old
editor stops saving, and the merged text saves as the next version."""

from __future__ import annotations

from typing import Any

import pytest

from captions.models import Caption
from captions.services import caption_create
from curation.services import group_create
from tests.e2e.support import expect, store_images
from tests.e2e.test_caption_editor import _is_save_of, _retype

pytestmark = pytest.mark.e2e

BASE = "A {Animal} behind a {Object}."
THEIRS = "A {Animal} peering out from behind a {Object}."
MINE = "A {Animal} behind a large {Object}."
MERGED = "A {Animal} peering out from behind a large {Object}."


@pytest.fixture
def group(png_factory: Any, annotator: Any) -> Any:
    return group_create(title="Peeking out", images=store_images(png_factory, 3), user=annotator)


def test_a_stale_tab_gets_both_edits_merged_and_its_old_editor_stops_saving(
    open_page: Any, annotator: Any, group: Any
) -> None:
    caption = caption_create(text=BASE, group=group, author=annotator)
    tab_a = open_page(annotator.username)
    tab_b = tab_a.context.new_page()
    for tab in (tab_a, tab_b):
        tab.goto(f"/groups/{group.pk}/caption/")
        expect(tab.get_by_label("Caption (draft, version 1)")).to_have_value(BASE)

    with tab_a.expect_response(_is_save_of(THEIRS)):
        _retype(tab_a, THEIRS)
    expect(tab_a.locator("#save-status")).to_contain_text("Saved version 2")

    # Tab B's autosave is still based on version 1: refused, and the merge view opens.
    with tab_b.expect_response(_is_save_of(MINE)) as refused:
        _retype(tab_b, MINE)
    assert refused.value.status == 409
    panel = tab_b.get_by_role("alert").filter(
        has_text="Someone changed this caption while you were editing"
    )
    expect(panel).to_be_visible()
    expect(panel.get_by_test_id("base")).to_have_text(BASE)
    expect(panel.get_by_test_id("theirs")).to_have_text(THEIRS)
    expect(panel.get_by_test_id("mine")).to_have_text(MINE)
    expect(panel.get_by_label("Merged text")).to_have_value(MERGED)
    expect(panel.get_by_test_id("merge-conflicts")).to_have_count(0)
    expect(tab_b.locator("#save-status")).to_contain_text("Not saved")

    # The old editor is off: its box cannot be typed into and its save button is disabled.
    old_box = tab_b.locator("#caption-text")
    expect(old_box).to_be_disabled()
    expect(tab_b.get_by_role("button", name="Save (Ctrl+S)")).to_be_disabled()
    assert old_box.get_attribute("hx-trigger") is None
    caption.refresh_from_db()
    assert (caption.text, caption.version) == (THEIRS, 2)

    # Saving the merge stores both edits as the next version and reloads the editor.
    panel.get_by_role("button", name="Save the merged text").click()
    expect(tab_b.get_by_text("Caption saved.")).to_be_visible()
    expect(tab_b.get_by_label("Caption (draft, version 3)")).to_have_value(MERGED)
    expect(tab_b.locator("#caption-text")).to_be_enabled()
    caption.refresh_from_db()
    assert (caption.text, caption.version) == (MERGED, 3)
    assert list(Caption.objects.filter(group=group).values_list("text", flat=True)) == [MERGED]
