"""Undo in the labelling queue brings the undone image back, and the counts add up."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.support import Page, expect, store_images

pytestmark = pytest.mark.e2e


def _press(page: Page, key: str, *, then_shows: int) -> None:
    page.keyboard.press(key)
    expect(page.locator("#label-image")).to_have_attribute("data-id", str(then_shows))
    page.wait_for_load_state()  # keys are heard once the page's deferred script has run


def test_undo_after_two_labels_shows_the_undone_image_again_and_the_counts_add_up(
    open_page: Any, annotator: Any, png_factory: Any
) -> None:
    ids = [image.pk for image in store_images(png_factory, 4)]
    page = open_page(annotator.username)
    page.get_by_role("link", name="Label", exact=True).click()
    page.wait_for_load_state()
    counts = page.locator("#label-counts")
    expect(counts).to_contain_text("You labelled 0 (0 today); 4 left for you, of 4.")

    _press(page, "y", then_shows=ids[1])
    _press(page, "n", then_shows=ids[2])
    expect(counts).to_contain_text("You labelled 2 (2 today); 2 left for you, of 4.")

    _press(page, "u", then_shows=ids[1])
    expect(page.get_by_role("status").filter(has_text="Last label undone.")).to_be_visible()
    expect(counts).to_contain_text("You labelled 1 (1 today); 3 left for you, of 4.")

    _press(page, "y", then_shows=ids[2])
    expect(counts).to_contain_text("You labelled 2 (2 today); 2 left for you, of 4.")
