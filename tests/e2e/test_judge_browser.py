"""An admin judges a finished benchmark run from the browser against a local stand-in for an
OpenAI-compatible endpoint: the form, the job's progress, the paper's table with refusals
and bad replies counted, cost and time, a run that stopped midway resumed with only its
missing pairs asked, and the typed API key never in a page."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from curation.models import Image
from evaluation.models import BenchmarkQuery, BenchmarkRun, JudgeRun, Retrieval
from tests.e2e.support import Page, expect, job_in_thread, wait_for_images
from tests.evaluation.judge_stand_in import (  # noqa: F401 (the stand_in fixture)
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    StandIn,
    chat,
    stand_in_server,
)
from tests.evaluation.study_data import finished_benchmark
from training.execution import execute_job
from training.models import Job

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KEY = "sk-browser-test-9876543210-secret"
# The job asks in batches of max(16, 4 x concurrency) pairs, and says how far it got
# between batches: the tests stop or hold the stand-in at the second batch.
BATCH = 16
REFUSE = "refuse"
# The stand-in's answer per method and query position, query first; candidate first, a
# number answer is one less (a position bias of exactly 1). "12" is out of range either way.
REPLIES = {
    "phash": (REFUSE, "Somewhere between 3 and 4.", "12", "2", "3", "4"),
    "relsim:1": ("7", "8", "9", REFUSE, "8", "6"),
    "clip-i": ("5", "5", "5", "5", "5", "5"),
}
Reply = Callable[[int, int, int], tuple[int, dict[str, Any]]]
Pairs = Counter[tuple[int, int]]


def _scripted(run: BenchmarkRun, server: StandIn) -> Reply:
    """The stand-in answers by pair (from REPLIES), whatever order the requests come in."""
    server.images = dict(Image.objects.values_list("sha256", "id"))
    positions = dict(BenchmarkQuery.objects.filter(run=run).values_list("image_id", "position"))
    method_of: dict[tuple[int, int], str] = {}
    # relsim:1 last: on query 0 its top-1 is clip-i's too, and answers as relsim's.
    for method in sorted(REPLIES):
        for query, hits in Retrieval.objects.filter(query__run=run, method=method).values_list(
            "query__image_id", "hits"
        ):
            method_of[query, hits[0]] = method

    def reply(index: int, first: int, second: int) -> tuple[int, dict[str, Any]]:
        query_first = first in positions  # no query image is any method's top-1 here
        query, candidate = (first, second) if query_first else (second, first)
        text = REPLIES[method_of[query, candidate]][positions[query]]
        if text == REFUSE:
            return 200, chat(None, refusal="I'm sorry, I can't help with that.")
        if text.isdigit() and not query_first:
            text = str(int(text) - 1)
        return 200, chat(text)

    return reply


def _all_pairs(run: BenchmarkRun, methods: list[str]) -> Pairs:
    """(query image, top-1) once per method: what a query-first run asks in all."""
    return Counter(
        (query, hits[0])
        for query, hits in Retrieval.objects.filter(query__run=run, method__in=methods).values_list(
            "query__image_id", "hits"
        )
    )


def _answered(server: StandIn) -> Pairs:
    """The (first image, second image) of each request the stand-in answered."""
    return Counter((first, second) for first, second, code, _ in server.seen if code == 200)


def _judge_settings(settings: Any) -> None:
    # No key or endpoint from the environment: the form's must be the ones used.
    settings.RELSIM_JUDGE_API_KEY = ""
    settings.RELSIM_JUDGE_URL = ""
    # Every progress report reaches the job row, so the page can show where the job is.
    settings.RELSIM_JOB_PROGRESS_MS = 0


def _fill_required(page: Page, server: StandIn) -> None:
    page.get_by_label("Endpoint URL").fill(server.url)
    page.get_by_label("Model", exact=True).fill("stand-in-4o")
    page.get_by_label("API key").fill(KEY)


def _score(page: Page, row: str) -> tuple[str, float, float]:
    """The mean as shown, and its interval, from a row's score cell: "m.mm [l.ll, h.hh]"."""
    text = page.locator(f"#{row} [data-testid=score]").inner_text().strip()
    match = re.fullmatch(r"(\d+\.\d\d) \[(\d+\.\d\d), (\d+\.\d\d)\]", text)
    assert match, f"{row}: {text!r} is not 'mean [low, high]'"
    return match.group(1), float(match.group(2)), float(match.group(3))


def _cell(page: Page, row: str, column: int) -> str:
    return page.locator(f"#{row} td").nth(column).inner_text().strip()


def test_an_admin_judges_a_run_watches_it_progress_and_reads_the_papers_table(
    open_page: Any,
    admin_user_role: Any,
    png_factory: Any,
    stand_in: StandIn,
    enqueued: list[tuple[int, str]],
    settings: Any,
) -> None:
    _judge_settings(settings)
    run = finished_benchmark(png_factory)
    script = _scripted(run, stand_in)
    gate = threading.Event()

    def held_at_second_batch(index: int, first: int, second: int) -> tuple[int, dict[str, Any]]:
        if index == BATCH:
            gate.wait(timeout=30)
        return script(index, first, second)

    stand_in.reply = held_at_second_batch
    page = open_page(admin_user_role.username)
    page.goto(f"/evaluation/benchmarks/{run.pk}/")
    wait_for_images(page)
    page.get_by_role("link", name="Judge this run").click()
    expect(page.get_by_role("heading", name=f"Judge benchmark run #{run.pk}")).to_be_visible()

    # A form sent back with an error does not carry the typed key back.
    _fill_required(page, stand_in)
    for label in ("relsim", "perceptual hash", "CLIP-I"):
        page.get_by_label(label, exact=True).uncheck()
    page.get_by_role("button", name="Start judging").click()
    expect(page.locator("#field-methods")).to_contain_text("Choose at least one method.")
    expect(page.get_by_label("Endpoint URL")).to_have_value(stand_in.url)
    expect(page.get_by_label("API key")).to_have_value("")
    assert KEY not in page.content()
    assert not JudgeRun.objects.exists()

    page.get_by_label("API key").fill(KEY)
    page.get_by_label("relsim", exact=True).check()
    page.get_by_label("perceptual hash", exact=True).check()
    page.get_by_label("Ask both orders").check()
    page.get_by_label("Concurrency").fill("2")
    page.get_by_label("Price per 1M input tokens").fill("2.5")
    page.get_by_label("Price per 1M output tokens").fill("10")
    page.get_by_role("button", name="Start judging").click()

    judge = JudgeRun.objects.get()
    assert judge.job is not None
    expect(page.get_by_role("heading", name=f"Judge run #{judge.pk}")).to_be_visible()
    status = page.locator("#judge-status")
    expect(status).to_contain_text("pending")
    assert enqueued == [(judge.job.pk, "cpu")]
    assert sorted(judge.methods) == ["phash", "relsim:1"] and judge.both_orders
    assert KEY not in page.content()

    # The worker's part runs beside the page, which polls: held at the second batch, the
    # page shows how far the job got; let go, it reloads itself with the table.
    worker = job_in_thread(judge.job.pk)
    try:
        expect(status).to_contain_text("running")
        expect(status).to_contain_text(f"{BATCH}/24 pairs asked")
        expect(status.locator("progress")).to_have_attribute("value", "67")
        assert len(stand_in.seen) == BATCH
    finally:
        gate.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    expect(status).to_contain_text("succeeded")
    expect(page.locator("#judge-progress")).to_have_text("24 of 24 pairs judged.")
    expect(page.locator("#resume-form")).to_have_count(0)
    # Each pair asked once in each order, with the key typed in the form.
    pairs = _all_pairs(run, ["phash", "relsim:1"])
    assert _answered(stand_in) == pairs + Counter({(c, q): n for (q, c), n in pairs.items()})
    assert set(stand_in.authorizations) == {f"Bearer {KEY}"}

    # The paper's table, ascending by mean: refusals and bad replies counted, not scored.
    rows = page.locator("#judge-table tbody tr")
    expect(rows).to_have_count(2)
    assert [rows.nth(n).get_attribute("id") for n in range(2)] == ["judge-phash", "judge-relsim1"]
    # Each row: the mean over valid scores, and the lowest and highest valid score.
    for row, mean, valid, refused, bad, (lowest, highest) in (
        ("judge-phash", "2.50", 6, 2, 4, (1, 4)),
        ("judge-relsim1", "7.10", 10, 2, 0, (5, 9)),
    ):
        shown, low, high = _score(page, row)
        assert shown == mean
        assert lowest <= low < float(mean) < high <= highest
        expect(page.locator(f"#{row} [data-testid=valid]")).to_have_text(str(valid))
        expect(page.locator(f"#{row} [data-testid=refused]")).to_have_text(str(refused))
        expect(page.locator(f"#{row} [data-testid=bad]")).to_have_text(str(bad))
        assert _cell(page, row, 5) == "0"  # no transport errors
    # Query first, candidate first, position bias.
    assert [_cell(page, "judge-phash", n) for n in (6, 7, 8)] == ["3.00", "2.00", "1.00"]
    assert [_cell(page, "judge-relsim1", n) for n in (6, 7, 8)] == ["7.60", "6.60", "1.00"]

    costs = page.locator("#judge-costs")
    expect(costs).to_contain_text(f"{24 * PROMPT_TOKENS} in, {24 * COMPLETION_TOKENS} out")
    cost = (24 * PROMPT_TOKENS * 2.5 + 24 * COMPLETION_TOKENS * 10) / 1e6
    expect(costs).to_contain_text(str(round(cost, 6)))
    taken = costs.locator("dt:has-text('time taken') + dd").inner_text()
    match = re.match(r"(\d+(?:\.\d+)?) s", taken)
    assert match and float(match.group(1)) > 0, taken
    assert KEY not in page.content()


def test_a_run_that_stopped_midway_resumes_asking_only_the_missing_pairs(
    open_page: Any,
    admin_user_role: Any,
    png_factory: Any,
    stand_in: StandIn,
    enqueued: list[tuple[int, str]],
    settings: Any,
) -> None:
    _judge_settings(settings)
    run = finished_benchmark(png_factory)
    script = _scripted(run, stand_in)

    def failing_after_first_batch(
        index: int, first: int, second: int
    ) -> tuple[int, dict[str, Any]]:
        if index >= BATCH:
            return 401, {"error": {"message": "invalid api key"}}
        return script(index, first, second)

    stand_in.reply = failing_after_first_batch
    page = open_page(admin_user_role.username)
    page.goto(f"/evaluation/benchmarks/{run.pk}/judge/")
    _fill_required(page, stand_in)  # all three methods, query first: 18 pairs
    page.get_by_role("button", name="Start judging").click()
    judge = JudgeRun.objects.get()
    assert judge.job is not None
    first_job = judge.job.pk
    expect(page.locator("#judge-status")).to_contain_text("pending")

    # The second batch fails whole: the job stops there, keeping the first batch's answers.
    assert execute_job(first_job, worker="e2e") == "failed"
    page.reload()
    status = page.locator("#judge-status")
    expect(status).to_contain_text("failed")
    expect(status.get_by_role("alert")).to_contain_text("failed all 2 requests")
    expect(page.locator("#judge-progress")).to_have_text(
        f"{BATCH} of 18 pairs judged, 2 without a verdict."
    )
    first_round = _answered(stand_in)
    assert sum(first_round.values()) == BATCH and len(stand_in.seen) == 18

    resume = page.locator("#resume-form")
    expect(resume.get_by_label("API key")).to_have_value("")
    stand_in.reply = script
    stand_in.seen.clear()
    stand_in.authorizations.clear()
    resume.get_by_label("API key").fill(KEY)
    resume.get_by_role("button", name="Resume").click()
    expect(page.locator(".messages")).to_contain_text("asks only the pairs without a verdict")
    expect(status).to_contain_text("pending")
    assert KEY not in page.content()

    judge.refresh_from_db()
    assert judge.job is not None and judge.job.pk != first_job
    assert enqueued == [(first_job, "cpu"), (judge.job.pk, "cpu")]
    assert execute_job(judge.job.pk, worker="e2e") == "succeeded"
    page.reload()
    expect(status).to_contain_text("succeeded")
    expect(page.locator("#judge-progress")).to_have_text("18 of 18 pairs judged.")
    expect(page.locator("#resume-form")).to_have_count(0)
    expect(page.locator("#judge-table tbody tr")).to_have_count(3)

    # Only the two pairs without a verdict were asked again, with the key typed again.
    second_round = _answered(stand_in)
    assert len(stand_in.seen) == sum(second_round.values()) == 2
    assert first_round + second_round == _all_pairs(run, list(REPLIES))
    assert stand_in.authorizations == [f"Bearer {KEY}"] * 2
    assert Job.objects.get(pk=first_job).status == Job.Status.FAILED
    assert KEY not in page.content()


def test_an_annotator_may_not_open_the_judge_form(
    open_page: Any, annotator: Any, png_factory: Any
) -> None:
    run = finished_benchmark(png_factory, queries=1)
    page = open_page(annotator.username)
    response = page.goto(f"/evaluation/benchmarks/{run.pk}/judge/")
    assert response is not None and response.status == 403
    expect(page.locator("#judge-form")).to_have_count(0)
    assert not JudgeRun.objects.exists()
