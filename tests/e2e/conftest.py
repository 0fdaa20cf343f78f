"""Browser fixtures: one headless Chromium (Debian's) per session, a fresh context per test,
logged in through the real login form against pytest-django's live server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        Page,
        Playwright,
        ViewportSize,
    )

# Playwright's sync API keeps an asyncio loop running in the main thread, which Django
# would otherwise take for an async context and refuse ORM calls from the tests.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CSP_VIOLATION = "Content-Security-Policy violation:"
REPORT_CSP_VIOLATIONS = (
    'document.addEventListener("securitypolicyviolation", (e) => console.error('
    f'"{CSP_VIOLATION} " + e.violatedDirective + " blocked " + (e.blockedURI || "inline code")));'
)
# Long enough for a slow shared CI machine, short enough that a broken page fails fast.
TIMEOUT_MS = 15_000


def _missing(reason: str) -> None:
    """In CI a missing browser fails the run; on a workstation the tests skip."""
    if IN_CI:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        _missing("playwright is not installed (pip install -r requirements-dev.txt)")
    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    launched = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    yield launched
    launched.close()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # Users are created and log in in every test; the real hasher is deliberately slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def open_page(
    browser: Browser, live_server: Any, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Page]]:
    """`open_page(username, viewport=..., javascript=...)`: a new browser context signed in
    as that user.
    Uncaught JavaScript errors on any of its pages fail the test."""
    from tests.e2e.support import LAPTOP, log_in

    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def open_(
        username: str | None = None,
        *,
        viewport: ViewportSize | None = None,
        javascript: bool = True,
    ) -> Page:
        context = browser.new_context(
            base_url=live_server.url,
            viewport=viewport or LAPTOP,
            accept_downloads=True,
            java_script_enabled=javascript,
        )
        contexts.append(context)
        context.set_default_timeout(TIMEOUT_MS)
        context.on("weberror", lambda error: errors.append(str(error.error)))
        # What the Content-Security-Policy blocks counts as an error too.
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        context.on(
            "console",
            lambda message: (
                errors.append(message.text) if message.text.startswith(CSP_VIOLATION) else None
            ),
        )
        page = context.new_page()
        if username:
            log_in(page, username)
        return page

    yield open_
    for context in contexts:
        context.close()
    if errors and not getattr(request.node, "rep_call_failed", True):
        pytest.fail(f"JavaScript errors on the page: {errors}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call_failed = report.failed  # type: ignore[attr-defined]
    return report


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Jobs the pages enqueue, kept here instead of sent to a broker: the test runs them."""
    calls: list[tuple[int, str]] = []
    from training import services as job_services

    monkeypatch.setattr(
        job_services, "job_enqueue", lambda *, job_id, queue: calls.append((job_id, queue))
    )
    return calls
