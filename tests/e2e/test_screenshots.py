"""A screenshot of each main page, on a laptop screen (and the pool on a tablet), from a
small lived-in world; each page is checked for what it must show before it is taken."""

from __future__ import annotations

from typing import Any

import pytest

from captions.models import Caption
from captions.services import caption_create
from curation.services import group_create, interest_label_set
from tests.e2e.support import (
    SCREENSHOTS,
    TABLET,
    all_images_loaded,
    expect,
    screenshot,
    store_images,
)
from training import services as job_services
from training.execution import execute_job
from training.models import Job

pytestmark = pytest.mark.e2e


@pytest.fixture
def world(
    annotator: Any, admin_user_role: Any, png_factory: Any, monkeypatch: Any
) -> dict[str, Any]:
    images = store_images(png_factory, 14)
    for image, answer in zip(images[:6], [True, False, True, True, False, True], strict=True):
        interest_label_set(image=image, annotator=admin_user_role, interesting=answer)
    approved = group_create(title="Nested inside one another", images=images[:3], user=annotator)
    caption_create(
        text="A {Object} inside a larger {Object} of the same kind.",
        group=approved,
        author=annotator,
        status=Caption.Status.APPROVED,
    )
    drafted = group_create(title="Peeking out", images=images[3:7], user=annotator)
    draft = caption_create(
        text="A red cat peering out from behind a {Object}.", group=drafted, author=annotator
    )
    monkeypatch.setattr(job_services, "job_enqueue", lambda *, job_id, queue: None)
    job = job_services.job_create(
        kind=Job.Kind.EXPORT_DATASET,
        params={"include_drafts": False, "splits": ["train", "test"]},
        user=admin_user_role,
    )
    assert execute_job(job.pk, worker="e2e") == "succeeded"
    return {"images": images, "group": drafted, "draft": draft, "job": job}


def test_each_main_page_renders_for_a_screenshot(
    open_page: Any, admin_user_role: Any, world: dict[str, Any]
) -> None:
    page = open_page(admin_user_role.username)
    image, group, draft, job = world["images"][4], world["group"], world["draft"], world["job"]
    shots = []

    page.goto("/pool/")
    expect(page.locator("#grid .tile")).to_have_count(14)
    expect(page.locator("#grid .badge.yes")).to_have_count(4)
    shots.append(screenshot(page, "pool-laptop"))

    page.goto(f"/images/{image.pk}/")
    expect(page.get_by_role("heading", name=f"Image {image.pk}")).to_be_visible()
    expect(page.get_by_role("link", name="Peeking out")).to_be_visible()
    shots.append(screenshot(page, "image-detail"))

    page.goto("/label/")
    expect(page.locator("#label-image")).to_be_visible()
    expect(page.locator("#label-counts")).to_contain_text("You labelled 6")
    shots.append(screenshot(page, "label-queue"))

    page.goto("/groups/")
    expect(page.locator(".group-row")).to_have_count(2)
    shots.append(screenshot(page, "group-list"))

    page.goto(f"/groups/{group.pk}/")
    expect(page.locator("#members .member")).to_have_count(4)
    expect(page.get_by_label("Similar images").locator(".tile").first).to_be_visible()
    shots.append(screenshot(page, "group-builder"))

    page.goto(f"/groups/{group.pk}/caption/")
    expect(page.locator("#lint mark.leak")).to_have_text(["red", "cat"])
    shots.append(screenshot(page, "caption-editor"))

    page.goto("/review/")
    expect(page.get_by_role("link", name=draft.text)).to_be_visible()
    shots.append(screenshot(page, "review-queue"))

    page.goto(f"/review/{draft.pk}/")
    expect(page.locator(".draft-text")).to_have_text(draft.text)
    shots.append(screenshot(page, "review-detail"))

    page.goto("/export/")
    expect(page.get_by_role("link", name="download")).to_be_visible()
    shots.append(screenshot(page, "export"))

    page.goto(f"/jobs/{job.pk}/")
    expect(page.get_by_test_id("job-status")).to_have_text("succeeded")
    expect(page.get_by_role("link", name="Download the archive")).to_be_visible()
    shots.append(screenshot(page, "export-job"))

    tablet = open_page(admin_user_role.username, viewport=TABLET)
    tablet.goto("/pool/")
    expect(tablet.locator("#grid .tile")).to_have_count(14)
    shots.append(screenshot(tablet, "pool-tablet"))
    assert all_images_loaded(tablet)

    for path in shots:
        assert path.parent == SCREENSHOTS and path.stat().st_size > 10_000, path


def _layout_problems(page: Any) -> list[str]:
    problems = []
    width, screen = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    if width > screen:
        problems.append(f"{page.url}: {width}px wide on a {screen}px screen")
    unreadable = page.evaluate(
        """() => Array.from(document.querySelectorAll("kbd"))
            .filter((k) => k.offsetParent !== null)
            .filter((k) => { const s = getComputedStyle(k); return s.color === s.backgroundColor; })
            .map((k) => k.textContent)"""
    )
    if unreadable:
        problems.append(f"{page.url}: shortcut keys {unreadable} drawn in their background colour")
    return problems


def test_main_pages_fit_the_screen_and_show_their_shortcut_keys(
    open_page: Any, admin_user_role: Any, world: dict[str, Any]
) -> None:
    group, draft, image = world["group"], world["draft"], world["images"][4]
    urls = [
        "/pool/",
        f"/images/{image.pk}/",
        "/label/",
        "/groups/",
        f"/groups/{group.pk}/",
        f"/groups/{group.pk}/caption/",
        "/review/",
        f"/review/{draft.pk}/",
        "/export/",
        f"/jobs/{world['job'].pk}/",
    ]
    problems = []
    for viewport in (None, TABLET):
        page = open_page(admin_user_role.username, viewport=viewport)
        for url in urls:
            page.goto(url)
            problems += _layout_problems(page)
    assert problems == []
