"""A participant takes a study in a real browser: by taps on a phone, reloading midway, and by
keys alone on a laptop. Every answer is stored once and the completion code comes last."""

from __future__ import annotations

from typing import Any

import pytest

from evaluation.models import Answer, Participant, Study
from evaluation.study_services import study_create
from tests.e2e.support import LAPTOP, Page, ViewportSize, expect, wait_for_images
from tests.evaluation.study_data import finished_benchmark

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHONE: ViewportSize = {"width": 390, "height": 844}


def _open_study(png_factory: Any, trials: int) -> Study:
    run = finished_benchmark(png_factory)
    study = study_create(
        name="phone study",
        benchmark=run,
        reference_method="relsim:1",
        baselines=["phash", "clip-i"],
        trials_per_participant=trials,
        catch_per_participant=1,
        completion_code="DONE42",
    ).study
    study.is_open = True
    study.save()
    return study


def _consent_and_start(page: Page, study: Study) -> Participant:
    page.goto(f"/study/{study.slug}/")
    page.locator("#agree").click()
    page.locator("#start").click()
    return Participant.objects.get(study=study)


def _shown_trial(page: Page) -> int:
    return int(page.locator("#trial-number").inner_text())


def _wait_for_trial(page: Page, number: int) -> None:
    expect(page.locator("#trial-number")).to_have_text(str(number))
    # The answer timer starts when every image of the trial is on screen.
    wait_for_images(page)


def test_a_participant_on_a_phone_taps_through_reloads_and_gets_the_code(
    open_page: Any, png_factory: Any
) -> None:
    study = _open_study(png_factory, trials=4)
    page = open_page(viewport=PHONE)
    page.goto(f"/study/{study.slug}/?PROLIFIC_PID=p0001&STUDY_ID=s1&SESSION_ID=x1")
    page.locator("#agree").click()
    expect(page.locator("#instructions-text")).to_be_visible()
    page.locator("#start").click()
    participant = Participant.objects.get(study=study)
    assert participant.platform_pid == "p0001"
    assert participant.viewport == "390x844"
    total = participant.assignments.count()
    assert total == 5

    # Touch targets large enough for a finger.
    for selector in ("#choose-left", "#choose-right", "#choose-same"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["height"] >= 44 and box["width"] >= 44

    for number in (1, 2):
        _wait_for_trial(page, number)
        page.locator("#choose-left").click()
    _wait_for_trial(page, 3)
    page.wait_for_timeout(1500)
    # A reload midway resumes at the same trial, with nothing lost or doubled, and the
    # trial's clock runs on from its first display.
    page.reload()
    _wait_for_trial(page, 3)
    assert Answer.objects.filter(participant=participant).count() == 2
    # A double tap sends one answer.
    page.locator("#choose-right").dblclick()
    _wait_for_trial(page, 4)
    page.locator("#choose-same").click()
    _wait_for_trial(page, 5)
    page.locator("#choose-left").click()

    expect(page.locator("#completion-code")).to_have_text("DONE42")
    answers = Answer.objects.filter(participant=participant)
    assert answers.count() == total
    assert answers.get(position=2).response_ms >= 1500
    assert answers.filter(response_ms__isnull=False).count() == total
    assert set(answers.values_list("viewport", flat=True)) == {"390x844"}
    participant.refresh_from_db()
    assert participant.finished_at is not None
    # The way back to Prolific carries the code, and only now.
    back = page.locator("#back-to-platform")
    assert back.get_attribute("href") == ("https://app.prolific.com/submissions/complete?cc=DONE42")


def test_a_participant_on_a_laptop_answers_with_keys_only(open_page: Any, png_factory: Any) -> None:
    study = _open_study(png_factory, trials=2)
    page = open_page(viewport=LAPTOP)
    page.goto(f"/study/{study.slug}/")
    page.keyboard.press("Tab")
    page.locator("#agree").focus()
    page.keyboard.press("Enter")
    page.locator("#start").focus()
    page.keyboard.press("Enter")
    participant = Participant.objects.get(study=study)
    # The same answer twice running, by two keys that mean it, then the third choice.
    keys = ["ArrowLeft", "1", "ArrowRight"]
    for number, key in enumerate(keys, start=1):
        _wait_for_trial(page, number)
        page.keyboard.press(key)
    expect(page.locator("#completion-code")).to_have_text("DONE42")
    choices = list(
        Answer.objects.filter(participant=participant)
        .order_by("created_at", "id")
        .values_list("choice", flat=True)
    )
    assert choices == ["left", "left", "right"]
    assert page.locator("#back-to-platform").count() == 0  # not from Prolific: no redirect


def test_an_answer_lost_on_the_way_can_be_given_again(open_page: Any, png_factory: Any) -> None:
    """A dropped connection leaves the trial on screen with a notice, and choosing again
    stores the answer once; the reply then draws the next trial in place."""
    study = _open_study(png_factory, trials=2)
    page = open_page(viewport=PHONE)
    participant = _consent_and_start(page, study)
    _wait_for_trial(page, 1)
    first_query = page.locator('[data-trial-image="query"]').get_attribute("src")
    page.evaluate("window.sameDocument = true")

    page.route("**/answer/", lambda route: route.abort())
    page.locator("#choose-left").click()
    expect(page.locator("#answer-notice")).to_contain_text("was not sent")
    assert _shown_trial(page) == 1
    assert not Answer.objects.filter(participant=participant).exists()

    page.unroute("**/answer/")
    page.locator("#choose-right").click()
    _wait_for_trial(page, 2)
    expect(page.locator("#answer-notice")).to_be_hidden()
    # The next trial's pictures, not the first one's, and the page was not reloaded.
    assert page.locator('[data-trial-image="query"]').get_attribute("src") != first_query
    assert page.evaluate("window.sameDocument === true")
    # Nothing on the new trial looks chosen already.
    assert page.evaluate("document.activeElement === document.body")
    answers = Answer.objects.filter(participant=participant)
    assert list(answers.values_list("position", "choice")) == [(0, "right")]


def test_a_browser_without_javascript_still_completes_the_study(
    open_page: Any, png_factory: Any
) -> None:
    """The form posts and the server redirects to the next trial: every answer is stored,
    without a response time the page could not measure."""
    study = _open_study(png_factory, trials=2)
    page = open_page(javascript=False)
    participant = _consent_and_start(page, study)
    for number, button in enumerate(["#choose-left", "#choose-same", "#choose-right"], start=1):
        expect(page.locator("#trial-number")).to_have_text(str(number))
        page.locator(button).click()
    expect(page.locator("#completion-code")).to_have_text("DONE42")
    answers = Answer.objects.filter(participant=participant).order_by("position")
    assert list(answers.values_list("choice", flat=True)) == ["left", "same", "right"]
    assert set(answers.values_list("response_ms", flat=True)) == {None}
