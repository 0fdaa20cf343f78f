"""The labelling queue driven by keyboard only: y / n label, s skips, u undoes."""

from __future__ import annotations

from typing import Any

import pytest

from curation.models import InterestLabel
from tests.e2e.support import Page, expect, store_images

pytestmark = pytest.mark.e2e


def _press(page: Page, key: str, *, then_shows: int | None) -> None:
    """Press a key that submits the queue form, and wait for the next page to be ready."""
    page.keyboard.press(key)
    if then_shows is None:
        expect(page.get_by_text("Nothing left to label. Thank you!")).to_be_visible()
    else:
        expect(page.locator("#label-image")).to_have_attribute("data-id", str(then_shows))
    # Keys are heard once the page's deferred script has run.
    page.wait_for_load_state()


def test_an_annotator_labels_five_images_by_keyboard_and_undoes_the_last(
    open_page: Any, annotator: Any, png_factory: Any
) -> None:
    images = store_images(png_factory, 6)
    ids = [image.pk for image in images]
    page = open_page(annotator.username)
    page.get_by_role("link", name="Label", exact=True).click()
    page.wait_for_load_state()  # keys are heard once the page's deferred script has run

    expect(
        page.get_by_role("heading", name="Is this image relationally interesting?")
    ).to_be_visible()
    expect(page.locator("#label-counts")).to_contain_text("You labelled 0 (0 today); 6 left")
    expect(page.locator("#label-image")).to_have_attribute("data-id", str(ids[0]))
    expect(page.get_by_role("button", name="Undo the last label")).to_be_disabled()

    _press(page, "y", then_shows=ids[1])
    expect(page.locator("#undo-form")).to_contain_text(f"(image {ids[0]}: yes)")
    _press(page, "n", then_shows=ids[2])
    _press(page, "s", then_shows=ids[3])  # skipped: stays unlabelled
    _press(page, "y", then_shows=ids[4])
    _press(page, "n", then_shows=ids[5])
    _press(page, "y", then_shows=None)
    expect(page.locator("#label-counts")).to_contain_text("You labelled 5 (5 today); 1 left")
    expect(page.locator("#undo-form")).to_contain_text(f"(image {ids[5]}: yes)")

    labels = dict(
        InterestLabel.objects.filter(annotator=annotator).values_list("image_id", "interesting")
    )
    assert labels == {ids[0]: True, ids[1]: False, ids[3]: True, ids[4]: False, ids[5]: True}

    # u takes back the last label only, and puts its image in front again.
    _press(page, "u", then_shows=ids[5])
    expect(page.get_by_role("status").filter(has_text="Last label undone.")).to_be_visible()
    expect(page.locator("#label-counts")).to_contain_text("You labelled 4")
    labels = dict(
        InterestLabel.objects.filter(annotator=annotator).values_list("image_id", "interesting")
    )
    assert labels == {ids[0]: True, ids[1]: False, ids[3]: True, ids[4]: False}

    # Answered again, differently this time.
    _press(page, "n", then_shows=None)
    labels = dict(
        InterestLabel.objects.filter(annotator=annotator).values_list("image_id", "interesting")
    )
    assert labels == {ids[0]: True, ids[1]: False, ids[3]: True, ids[4]: False, ids[5]: False}
    assert not InterestLabel.objects.filter(image_id=ids[2]).exists()


def test_in_the_pool_y_and_n_label_the_focused_image_in_place(
    open_page: Any, annotator: Any, png_factory: Any
) -> None:
    images = store_images(png_factory, 3)
    page = open_page(annotator.username)
    page.get_by_role("link", name="Browse the pool").click()
    tiles = page.locator("#grid .tile")
    expect(tiles).to_have_count(3)
    first = int(tiles.nth(0).get_attribute("data-id") or 0)
    expect(tiles.nth(0)).to_be_focused()

    page.keyboard.press("y")
    expect(page.locator(f"#label-{first}")).to_have_text("yes")
    expect(page.locator("#pool-status")).to_have_text(f"Image {first}: yes")
    page.keyboard.press("n")
    expect(page.locator(f"#label-{first}")).to_have_text("no")
    label = InterestLabel.objects.get(image_id=first, annotator=annotator)
    assert label.interesting is False
    assert {image.pk for image in images} >= {first}
