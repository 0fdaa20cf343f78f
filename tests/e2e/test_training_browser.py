"""An admin starts relsim training from the browser, watches the loss curve grow while the
run trains (a real child process, the demo's tiny VLM), and cancels it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from captions.importers import dataset_import
from ml import synthetic
from tests.e2e.support import expect, job_in_thread
from training.models import Job, JobMetric, TrainedModel, WorkerBeat

pytestmark = pytest.mark.e2e


def test_an_admin_trains_relsim_watches_the_curve_and_cancels(
    open_page: Any,
    admin_user_role: Any,
    enqueued: list[tuple[int, str]],
    tmp_path: Path,
) -> None:
    synthetic.generate_dataset(tmp_path / "set", seed=0, per_relation=4, size=112)
    dataset_import(folder=tmp_path / "set")
    now = timezone.now()
    WorkerBeat.objects.create(name="gpu@e2e", queues=["gpu"], pid=1, started_at=now, last_seen=now)
    page = open_page(admin_user_role.username)

    page.get_by_role("link", name="Models", exact=True).click()
    page.get_by_role("link", name="Train relsim").click()
    page.locator("#id_name").fill("browser run")
    page.locator("#id_epochs").fill("100000")
    page.locator("#advanced-options summary").click()
    page.locator("#id_log_every").fill("1")
    page.get_by_role("button", name="Start training").click()

    job = Job.objects.get(kind=Job.Kind.TRAIN_RELSIM)
    assert enqueued == [(job.pk, "gpu")]
    assert job.params["config"]["epochs"] == 100000 and job.params["name"] == "browser run"
    expect(page.get_by_test_id("job-status")).to_have_text("pending")

    # The worker's part runs beside the page, which polls for the status and the curve.
    worker = job_in_thread(job.pk)
    try:
        expect(page.get_by_test_id("job-status")).to_have_text("running", timeout=60_000)
        loss = page.locator('.curve-panel[data-metric="loss"]')
        expect(loss).to_be_visible(timeout=90_000)
        first = int(loss.get_attribute("data-points") or 0)
        page.wait_for_function(
            f"() => Number(document.querySelector('.curve-panel[data-metric=\"loss\"]')"
            f".dataset.points) > {first}",
            timeout=60_000,
        )
        assert JobMetric.objects.filter(job=job).count() > first
        page.locator("#cancel-job").click()
        expect(page.get_by_test_id("job-status")).to_have_text("cancelled", timeout=30_000)
    finally:
        if worker.is_alive():
            Job.objects.filter(pk=job.pk).update(cancel_requested=True)
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert not TrainedModel.objects.exists()  # a cancelled run registers no model
