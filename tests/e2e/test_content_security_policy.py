"""The pages work under the Content-Security-Policy: nothing they need is blocked (the
open_page fixture fails a test on any violation), while injected inline code is."""

from __future__ import annotations

from typing import Any

import pytest

from curation.services import group_create
from tests.e2e.conftest import CSP_VIOLATION, REPORT_CSP_VIOLATIONS
from tests.e2e.support import all_images_loaded, expect, store_images

pytestmark = pytest.mark.e2e


def test_app_and_admin_pages_load_everything_under_the_policy(
    open_page: Any, admin_user_role: Any, annotator: Any, png_factory: Any
) -> None:
    images = store_images(png_factory, 4)
    group = group_create(title="Rings", images=images[:2], user=annotator)
    page = open_page(admin_user_role.username)
    for url in (
        "/pool/",
        f"/images/{images[0].pk}/",
        "/label/",
        f"/groups/{group.pk}/",
        f"/groups/{group.pk}/caption/",
        "/review/",
        "/export/",
        "/models/",
        "/evaluation/",
        "/evaluation/benchmarks/",
        "/evaluation/benchmarks/new/",
        "/evaluation/studies/new/",
        "/captions/batches/",
        "/admin/",
        "/admin/curation/image/",
        "/admin/training/job/import/",
    ):
        response = page.goto(url)
        assert response is not None and response.ok, url
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
        assert all_images_loaded(page), url
    # htmx still swaps fragments: the group's "find similar" panel loads by itself.
    page.goto(f"/groups/{group.pk}/")
    expect(page.get_by_label("Similar images").locator(".tile").first).to_be_visible()


def test_inline_script_injected_into_a_page_is_blocked(browser: Any, live_server: Any) -> None:
    # Its own browser context: open_page would fail the test on the violation it causes.
    context = browser.new_context(base_url=live_server.url)
    try:
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        page = context.new_page()
        reported: list[str] = []
        page.on("console", lambda message: reported.append(message.text))
        page.goto("/login/")
        page.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "window.injected = true";
                document.body.append(script);
            }"""
        )
        page.wait_for_function("() => document.readyState === 'complete'")
        assert page.evaluate("() => window.injected") is None
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        assert any(text.startswith(CSP_VIOLATION) for text in reported), reported
    finally:
        context.close()
