"""The current group follows the user into the pool, find-similar adds show up at once,
members reorder by dragging; lower-case review keys, the favicon and the phone header."""

from __future__ import annotations

from typing import Any

import pytest

from captions.models import Caption
from captions.services import caption_create
from curation.models import Group
from curation.selectors import current_group
from curation.services import group_create
from tests.e2e.support import ViewportSize, expect, screenshot, store_images

pytestmark = pytest.mark.e2e

PHONE: ViewportSize = {"width": 390, "height": 844}


def _member_ids(page: Any) -> list[int]:
    return [int(m.get_attribute("data-id") or 0) for m in page.locator("#members .member").all()]


def test_add_from_the_pool_makes_that_group_the_current_one(
    open_page: Any, annotator: Any, png_factory: Any
) -> None:
    store_images(png_factory, 3)
    first = group_create(title="First logic", user=annotator)
    second = group_create(title="Second logic", user=annotator)
    page = open_page(annotator.username)

    page.goto(f"/groups/{first.pk}/")
    page.get_by_role("button", name="Make current (a in the pool adds here)").click()
    expect(page.get_by_text("current group", exact=True)).to_be_visible()

    page.goto(f"/groups/{second.pk}/")
    page.get_by_role("button", name="Add from the pool").click()
    expect(page.locator(".toolbar")).to_contain_text("Current group: Second logic")
    page.wait_for_load_state()
    page.keyboard.press("a")
    expect(page.locator("#pool-status")).to_have_text("Added 1 to “Second logic”.")
    assert second.members.count() == 1 and first.members.count() == 0
    assert current_group(annotator) == second


def test_an_add_from_find_similar_refreshes_the_members_in_place(
    open_page: Any, annotator: Any, png_factory: Any
) -> None:
    images = store_images(png_factory, 5)
    group = group_create(title="Leaning", images=images[:2], user=annotator)
    page = open_page(annotator.username)
    page.goto(f"/groups/{group.pk}/")
    expect(page.get_by_role("heading", name="Members (2 of at most 10)")).to_be_visible()
    suggestions = page.locator("#similar .tile")
    expect(suggestions).to_have_count(3)
    picked = int(suggestions.first.get_attribute("data-id") or 0)

    # Mark the page: a reload would lose this, an in-place swap keeps it.
    page.evaluate("() => { window.notReloaded = true; }")
    suggestions.first.get_by_role("button", name="Add").click()
    expect(page.get_by_role("heading", name="Members (3 of at most 10)")).to_be_visible()
    expect(page.locator("#members .member")).to_have_count(3)
    assert _member_ids(page) == [images[0].pk, images[1].pk, picked]
    assert page.evaluate("() => window.notReloaded === true")
    assert current_group(annotator) == group


def test_dragging_a_member_to_the_front_saves_the_new_order(
    open_page: Any, annotator: Any, png_factory: Any
) -> None:
    images = store_images(png_factory, 3)
    group = group_create(title="Nested", images=images, user=annotator)
    page = open_page(annotator.username)
    page.goto(f"/groups/{group.pk}/")
    page.wait_for_load_state()
    members = page.locator("#members .member")
    expect(members).to_have_count(3)

    members.nth(2).drag_to(members.nth(0), target_position={"x": 10, "y": 60})
    expected = [images[2].pk, images[0].pk, images[1].pk]
    expect(page.get_by_role("button", name=f"Move image {images[2].pk} earlier")).to_have_count(0)
    assert _member_ids(page) == expected
    ordered = Group.objects.get(pk=group.pk).members.order_by("position")
    assert list(ordered.values_list("image_id", flat=True)) == expected

    # The plain buttons carry the new order after the refresh.
    page.get_by_role("button", name=f"Move image {images[0].pk} earlier").click()
    expect(page.locator("#members .member").first).to_have_attribute("data-id", str(images[0].pk))
    ordered = Group.objects.get(pk=group.pk).members.order_by("position")
    assert list(ordered.values_list("image_id", flat=True)) == [
        images[0].pk,
        images[2].pk,
        images[1].pk,
    ]


def test_lower_case_a_approves_on_the_review_page(
    open_page: Any, annotator: Any, reviewer: Any, png_factory: Any
) -> None:
    group = group_create(title="Tucked in", images=store_images(png_factory, 2), user=annotator)
    caption = caption_create(
        text="A {Animal} tucked into a {Object}.", group=group, author=annotator
    )
    page = open_page(reviewer.username)
    page.goto(f"/review/{caption.pk}/")
    page.wait_for_load_state()

    page.keyboard.press("?")
    expect(page.get_by_role("dialog")).to_contain_text("a / e / r")
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    expect(page.get_by_text("Approved.", exact=True)).to_be_visible()
    assert Caption.objects.get(pk=caption.pk).status == "approved"


def test_every_page_links_a_favicon_that_loads(open_page: Any, annotator: Any) -> None:
    page = open_page(annotator.username)
    href = page.locator('head link[rel="icon"]').get_attribute("href")
    assert href and href.endswith(".svg")
    response = page.request.get(href)
    assert response.status == 200
    assert "image/svg+xml" in response.headers["content-type"]


def test_the_phone_header_takes_at_most_two_lines(open_page: Any, annotator: Any) -> None:
    page = open_page(annotator.username, viewport=PHONE)
    line = page.evaluate("() => parseFloat(getComputedStyle(document.body).lineHeight)")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Groups")).to_be_attached()
    nav_box = nav.bounding_box()
    header_box = page.locator(".topbar").bounding_box()
    assert nav_box and header_box
    assert nav_box["height"] <= 1.5 * line
    assert header_box["height"] <= 2 * line + 40  # two lines, their padding and gap
    assert header_box["width"] <= PHONE["width"]
    # Every link stays reachable: the row scrolls sideways instead of wrapping.
    nav.get_by_role("link", name="Groups").scroll_into_view_if_needed()
    expect(nav.get_by_role("link", name="Groups")).to_be_in_viewport()
    screenshot(page, "phone-header-390")
