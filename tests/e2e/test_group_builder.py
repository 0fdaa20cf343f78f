"""Building a group: create it (it becomes current), then add images from the pool with the
keyboard (a, x, arrows) and with a click and shift-click selection."""

from __future__ import annotations

from typing import Any

import pytest

from curation.models import Group
from tests.e2e.support import expect, store_images

pytestmark = pytest.mark.e2e


def test_an_annotator_builds_a_group_of_three_from_the_pool(
    open_page: Any, annotator: Any, png_factory: Any
) -> None:
    store_images(png_factory, 6)
    page = open_page(annotator.username)

    page.get_by_role("link", name="Groups", exact=True).click()
    expect(page.get_by_text("No groups yet.")).to_be_visible()
    page.get_by_role("textbox", name="Title").fill("Peeking out from behind")
    page.get_by_role("button", name="Create and make current").click()
    expect(page.get_by_role("heading", name="Peeking out from behind")).to_be_visible()
    expect(page.get_by_text("current group", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Members (0 of at most 10)")).to_be_visible()
    group = Group.objects.get(title="Peeking out from behind")
    assert group.created_by == annotator

    page.get_by_role("button", name="Add from the pool").click()
    expect(page.locator(".toolbar")).to_contain_text("Current group: Peeking out from behind")
    tiles = page.locator("#grid .tile")
    expect(tiles).to_have_count(6)
    order = [int(tile.get_attribute("data-id") or 0) for tile in tiles.all()]

    # The first tile has the focus: a adds it at once.
    expect(tiles.nth(0)).to_be_focused()
    page.keyboard.press("a")
    expect(page.locator("#pool-status")).to_have_text("Added 1 to “Peeking out from behind”.")

    # Arrow to the next tile and select it with x; shift-click extends to the third.
    page.keyboard.press("ArrowRight")
    expect(tiles.nth(1)).to_be_focused()
    page.keyboard.press("x")
    expect(tiles.nth(1)).to_have_class("tile selected")
    tiles.nth(2).locator(".tile-meta").click(modifiers=["Shift"])
    expect(tiles.nth(2)).to_have_class("tile selected")
    add_selected = page.get_by_role("button", name="Add selected (2)")
    expect(add_selected).to_be_enabled()
    add_selected.click()
    expect(page.get_by_text("Added 2 image(s) to “Peeking out from behind”.")).to_be_visible()
    # The pool was filtered to images in no group: the three are gone from it.
    expect(tiles).to_have_count(3)
    assert [int(t.get_attribute("data-id") or 0) for t in tiles.all()] == order[3:]

    page.get_by_role("link", name="Peeking out from behind").click()
    expect(page.get_by_role("heading", name="Members (3 of at most 10)")).to_be_visible()
    members = page.locator("#members .member")
    expect(members).to_have_count(3)
    assert [int(m.get_attribute("data-id") or 0) for m in members.all()] == order[:3]
    assert list(group.members.order_by("position").values_list("image_id", flat=True)) == order[:3]
