"""Helpers for the browser tests: the Playwright imports, logging in through the login
form, small worlds built with the services, and screenshots."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

try:
    from playwright.sync_api import Page, ViewportSize, expect
except ModuleNotFoundError:
    if IN_CI:
        raise
    pytest.skip(
        "playwright is not installed (pip install -r requirements-dev.txt)",
        allow_module_level=True,
    )

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
LAPTOP: ViewportSize = {"width": 1366, "height": 768}
TABLET: ViewportSize = {"width": 820, "height": 1180}
PASSWORD = "a-long-test-password"

__all__ = ["LAPTOP", "PASSWORD", "TABLET", "Page", "ViewportSize", "expect", "wait_for_images"]


def job_in_thread(job_id: int) -> threading.Thread:
    """Run a job's worker part beside the page, in a started thread of this process."""
    from django.db import connection

    from training.execution import execute_job

    def work() -> None:
        try:
            execute_job(job_id, worker="e2e")
        finally:
            # The thread's own connection, left open, would keep the test database from
            # being dropped at the end of the session.
            connection.close()

    thread = threading.Thread(target=work, name=f"e2e-job-{job_id}")
    thread.start()
    return thread


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Sign in the way a person does, and land on the overview."""
    page.goto("/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_text(f"Signed in as {username}")).to_be_visible()


def store_images(png_factory: Callable[..., bytes], count: int, *, seed: int = 0) -> list[Any]:
    """`count` distinct images, oldest (lowest id) first."""
    from curation.intake import normalise_image
    from curation.services import image_store

    return [
        image_store(
            normalised=normalise_image(png_factory(seed + n, size=160)),
            source_name=f"photo-{seed + n}.png",
        ).image
        for n in range(count)
    ]


def all_images_loaded(page: Page) -> bool:
    """True when every <img> on the page has decoded (none broken, none still loading)."""
    return bool(
        page.evaluate(
            "() => Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0)"
        )
    )


def wait_for_images(page: Page, timeout_s: float = 15.0) -> None:
    """Wait until every <img> on the page has loaded; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not all_images_loaded(page):
        assert time.monotonic() < deadline, f"images still loading on {page.url}"
        time.sleep(0.05)


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot under test-artifacts/screenshots/, once images are in."""
    page.wait_for_load_state("load")
    page.wait_for_function(
        "() => Array.from(document.images)"
        ".filter((i) => i.loading !== 'lazy' || i.getBoundingClientRect().top < innerHeight)"
        ".every((i) => i.complete && i.naturalWidth > 0)"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def saved_version(text: str) -> int:
    """The N of "Saved version N at ..." in the editor's status line."""
    match = re.search(r"Saved version (\d+)", text)
    assert match, f"no 'Saved version N' in {text!r}"
    return int(match.group(1))
