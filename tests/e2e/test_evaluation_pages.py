"""An admin builds an A/B study from a benchmark run in the browser, opens and previews it,
and reads the results with their chart once participants have answered; every page loads
under the Content-Security-Policy with all its images."""

from __future__ import annotations

from typing import Any

import pytest

from evaluation.models import Participant, Study
from evaluation.study_services import answer_record, participant_start
from tests.e2e.support import Page, expect, wait_for_images
from tests.evaluation.study_data import finished_benchmark

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _loaded(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.ok, url
    page.wait_for_load_state("networkidle")
    wait_for_images(page)


def test_an_admin_builds_opens_previews_and_reads_a_study(
    open_page: Any, admin_user_role: Any, png_factory: Any
) -> None:
    run = finished_benchmark(png_factory)
    page = open_page(admin_user_role.username)
    _loaded(page, "/evaluation/")
    page.get_by_role("link", name="Evaluation", exact=True).first.click()
    _loaded(page, "/evaluation/benchmarks/")
    _loaded(page, f"/evaluation/benchmarks/{run.pk}/")

    _loaded(page, f"/evaluation/studies/new/?benchmark={run.pk}")
    page.get_by_label("Name").fill("Relsim against two baselines")
    page.get_by_label("Trials per participant").fill("4")
    page.get_by_label("Completion code").fill("OK123")
    page.locator("#build-study").click()
    expect(page.locator(".messages")).to_contain_text("A/B trials")
    study = Study.objects.get(name="Relsim against two baselines")
    assert study.reference_method == "relsim:1"
    assert sorted(study.baselines) == ["clip-i", "phash"]

    page.locator("#open-study").click()
    expect(page.locator("#study-state")).to_have_text("open")
    link = page.locator("#study-link").inner_text()
    assert link.endswith(f"/study/{study.slug}/")

    page.locator("#preview").click()
    expect(page.get_by_role("note")).to_contain_text("nothing is recorded")
    wait_for_images(page)
    page.get_by_role("link", name="Left").click()
    expect(page.get_by_role("note")).to_contain_text("Trial 2 of")
    assert not Participant.objects.exists()

    text = study.texts.get()
    for pid in ("p1", "p2"):
        participant = participant_start(study=study, text=text, platform={"pid": pid}).participant
        for position in range(participant.trial_count):
            answer_record(
                participant=participant, position=position, choice="left", response_ms=1500
            )
    _loaded(page, f"/evaluation/studies/{study.pk}/results/")
    expect(page.locator("body")).to_contain_text("phash")
    chart = page.locator("img[src$='results.png']")
    expect(chart).to_be_visible()
    assert page.evaluate("(img) => img.naturalWidth", chart.element_handle()) > 100

    # Leaving a participant out changes the figures, and says so.
    first = Participant.objects.get(platform_pid="p1")
    page.locator(f"#participant-{first.pk}").get_by_role("button", name="Exclude").click()
    expect(page.locator(".messages")).to_contain_text("left out of the results")
    expect(page.locator("#participant-count")).to_have_text("1")
    first.refresh_from_db()
    assert first.excluded
