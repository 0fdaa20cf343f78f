"""A training job's page draws its loss and lr curves, grows them as the run logs new steps,
offers the other series, and stops asking once the run has finished; the comparison page
draws two runs on one chart."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.e2e.support import expect
from training.models import Job, JobMetric

pytestmark = pytest.mark.e2e

# What the chart holds, read from uPlot itself: the number of x values, and the series.
DRAWN = "(panel) => panel.uplot.data[0].length"
LABELS = "(panel) => panel.uplot.series.map((s) => s.label)"


def _log(job: Job, steps: Iterable[int]) -> None:
    """What the worker does while a run trains: metrics rows, as the run writes them."""
    JobMetric.objects.bulk_create(
        JobMetric(
            job=job,
            step=step,
            values={
                "step": step,
                "loss": 3.0 / step,
                "lr": 1e-4 * min(1.0, step / 4),
                "samples_per_s": 120.0 + step,
                "epoch": step / 10,
            },
        )
        for step in steps
    )


def test_the_curves_grow_while_the_run_logs_steps_and_stop_when_it_finishes(
    open_page: Any, admin_user_role: Any
) -> None:
    job = Job.objects.create(
        kind=Job.Kind.TRAIN_RELSIM,
        queue=Job.Queue.GPU,
        status=Job.Status.RUNNING,
        progress=0.3,
        started_at=timezone.now() - timedelta(seconds=60),
        created_by=admin_user_role,
        log_tail="loading the backbone\nstep 3 of 10",
    )
    _log(job, range(1, 4))
    page = open_page(admin_user_role.username)
    page.goto(f"/jobs/{job.pk}/")

    curves = page.locator("#job-curves")
    loss = curves.locator('[data-metric="loss"]')
    expect(curves).to_have_attribute("data-points", "3")
    expect(loss).to_have_attribute("data-points", "3")
    expect(curves.locator('[data-metric="lr"]')).to_be_visible()
    expect(curves.locator("[data-metric]")).to_have_count(2)  # loss and lr to start with
    assert loss.evaluate(DRAWN) == 3
    assert loss.locator("canvas").evaluate("(c) => c.width > 0 && c.height > 0")
    expect(page.get_by_test_id("job-eta")).to_contain_text("left at this pace")
    expect(page.locator("#job-log")).to_contain_text("step 3 of 10")

    # The run goes on: the page fetches the new steps by itself.
    _log(job, range(4, 9))
    expect(curves).to_have_attribute("data-points", "8", timeout=10_000)
    expect(loss).to_have_attribute("data-points", "8")
    assert loss.evaluate(DRAWN) == 8
    assert loss.evaluate("(panel) => panel.uplot.data[1].at(-1)") == pytest.approx(3.0 / 8)

    # Any other numeric series on demand, in a panel of its own.
    page.get_by_role("checkbox", name="samples_per_s").check()
    speed = curves.locator('[data-metric="samples_per_s"]')
    expect(speed).to_have_attribute("data-points", "8")
    assert speed.evaluate(DRAWN) == 8
    page.get_by_role("checkbox", name="lr").uncheck()
    expect(curves.locator('[data-metric="lr"]')).to_have_count(0)

    # The last steps and the end of the run: drawn, then no more requests.
    _log(job, range(9, 11))
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.SUCCEEDED, progress=1.0, finished_at=timezone.now()
    )
    expect(curves).to_have_attribute("data-state", "done", timeout=10_000)
    expect(curves).to_have_attribute("data-points", "10")
    assert loss.evaluate(DRAWN) == 10
    expect(page.get_by_test_id("job-status")).to_have_text("succeeded")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.wait_for_timeout(4_000)
    assert [url for url in asked if "metrics.json" in url] == []


def test_two_runs_are_drawn_on_one_chart_from_the_jobs_list(
    open_page: Any, admin_user_role: Any
) -> None:
    done = {"status": Job.Status.SUCCEEDED, "progress": 1.0}
    first = Job.objects.create(kind=Job.Kind.TRAIN_RELSIM, params={"config": {"lr": 1e-4}}, **done)
    second = Job.objects.create(kind=Job.Kind.TRAIN_RELSIM, params={"config": {"lr": 3e-4}}, **done)
    _log(first, range(1, 6))
    _log(second, range(2, 9, 2))
    page = open_page(admin_user_role.username)

    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    page.get_by_label(f"Compare job #{first.pk}").check()
    page.get_by_label(f"Compare job #{second.pk}").check()
    page.get_by_role("button", name="Compare the two checked runs").click()

    expect(page.get_by_role("heading", name=f"Job #{first.pk} vs #{second.pk}")).to_be_visible()
    loss = page.locator('#job-curves [data-metric="loss"]')
    # Steps 1-5 and 2, 4, 6, 8 on one x axis: 1, 2, 3, 4, 5, 6, 8.
    expect(loss).to_have_attribute("data-points", "7")
    assert loss.evaluate(LABELS) == ["step", f"#{first.pk}", f"#{second.pk}"]
    assert loss.evaluate("(panel) => panel.uplot.data[2]")[:3] == [None, 1.5, None]
    expect(page.locator("#job-curves")).to_have_attribute("data-state", "done")
    expect(page.locator('tr.differs[data-key="config.lr"]')).to_be_visible()
