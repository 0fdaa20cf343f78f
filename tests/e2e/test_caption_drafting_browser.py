"""An admin drafts captions for groups with the active captioner from the captioner page,
watches the drafting job succeed on its page, and a reviewer finds the model drafts in the
review queue, marked as the model's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from captions.importers import dataset_import
from captions.models import Caption
from curation.models import Image
from curation.services import group_create
from ml import synthetic
from tests.e2e.support import expect
from training.caption_selectors import model_label
from training.execution import execute_job
from training.models import Job, TrainedModel, WorkerBeat

pytestmark = pytest.mark.e2e

FRESH_GROUPS = 3
DRAFT_SEED = 0  # with it, the tiny demo captioner's drafts for the three groups are usable


def _active_captioner(tmp_path: Path) -> TrainedModel:
    """The demo set imported, and a tiny captioner trained on it in this process."""
    folder = tmp_path / "synthetic"
    synthetic.generate_dataset(folder, seed=0, per_relation=3, size=56)
    dataset_import(folder=folder)
    train = Job.objects.create(
        kind=Job.Kind.TRAIN_CAPTIONER,
        params={
            "name": "demo captioner",
            "config": {"image_size": 56, "max_steps": 2, "batch_size": 4, "log_every": 1},
        },
    )
    assert execute_job(train.pk, worker="e2e") == "succeeded"
    train.refresh_from_db()
    assert train.status == Job.Status.SUCCEEDED, (train.error, train.log_tail)
    model = TrainedModel.objects.get(pk=train.artifacts["model_id"])
    assert model.is_active
    return model


def test_an_admin_drafts_captions_and_a_reviewer_finds_the_model_drafts(
    open_page: Any,
    admin_user_role: Any,
    reviewer: Any,
    enqueued: list[tuple[int, str]],
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.RELSIM_VLM_PATH = ""  # the tiny demo model
    model = _active_captioner(tmp_path)
    # The imported groups are captioned already: new groups without one are the targets.
    images = list(Image.objects.order_by("id")[: 2 * FRESH_GROUPS])
    fresh = [
        group_create(title=f"fresh {n}", images=images[2 * n : 2 * n + 2])
        for n in range(FRESH_GROUPS)
    ]
    now = timezone.now()
    WorkerBeat.objects.create(name="gpu@e2e", queues=["gpu"], pid=1, started_at=now, last_seen=now)

    page = open_page(admin_user_role.username)
    page.get_by_role("link", name="Models", exact=True).click()
    page.get_by_role("link", name="Anonymous captioner").click()
    expect(page.get_by_role("heading", name="Anonymous captioner")).to_be_visible()
    expect(page.locator("#gpu-warning")).to_have_count(0)
    expect(page.locator("#active-captioner")).to_contain_text(model.name)
    form = page.locator("#draft-form")
    expect(form.get_by_label("Captioner")).to_have_value("")  # the active one
    form.get_by_label("target").select_option("groups")
    form.get_by_label("limit").fill(str(FRESH_GROUPS))
    form.get_by_role("button", name="Draft captions").click()

    expect(page.get_by_role("heading", name="Draft captions #")).to_be_visible()
    job = Job.objects.get(kind=Job.Kind.CAPTION)
    assert enqueued == [(job.pk, "gpu")]
    assert job.queue == Job.Queue.GPU and job.created_by == admin_user_role
    assert job.params == {"target": "groups", "limit": FRESH_GROUPS}
    expect(page).to_have_url(re.compile(rf"/jobs/{job.pk}/$"))
    expect(page.get_by_role("heading", name=f"Draft captions #{job.pk}")).to_be_visible()
    expect(page.get_by_test_id("job-status")).to_have_text("pending")

    # The worker's part, in this process; the page polls and shows the outcome by itself.
    # The page sends no seed; the tiny demo model's random draws are as often unusable
    # (broken braces) as not, so the test fixes the sampling stream to one that drafts.
    Job.objects.filter(pk=job.pk).update(params={**job.params, "seed": DRAFT_SEED})
    assert execute_job(job.pk, worker="e2e") == "succeeded"
    expect(page.get_by_test_id("job-status")).to_have_text("succeeded", timeout=10_000)
    job.refresh_from_db()
    assert job.artifacts["targets"] == FRESH_GROUPS
    drafts = list(Caption.objects.filter(source=Caption.Source.MODEL).order_by("id"))
    assert len(drafts) == job.artifacts["created"] >= 1, job.artifacts
    for draft in drafts:
        assert draft.group in fresh and draft.status == Caption.Status.DRAFT
        assert draft.model_name == model_label(model)

    # The reviewer finds them in the queue, marked as the model's.
    review = open_page(reviewer.username)
    review.get_by_role("link", name="Review", exact=True).click()
    expect(review.get_by_role("heading", name="Drafts to review")).to_be_visible()
    first = drafts[0]
    link = review.locator(f'a[href="/review/{first.pk}/"]')
    expect(link).to_have_count(1)
    row = review.get_by_role("row").filter(has=link)
    expect(row).to_contain_text(f"group “{first.group}”")
    expect(row).to_contain_text(f"model ({first.model_name}")
    for draft in drafts:
        expect(review.locator(f'a[href="/review/{draft.pk}/"]')).to_have_text(draft.text)

    # Only model drafts: the imported ones are approved, so the filter keeps exactly these.
    review.get_by_label("Source").select_option("model")
    review.get_by_role("button", name="Filter").click()
    expect(review.locator('tbody a[href^="/review/"]')).to_have_count(len(drafts))

    link = review.locator(f'a[href="/review/{first.pk}/"]')
    link.click()
    expect(review).to_have_url(re.compile(rf"/review/{first.pk}/$"))
    expect(review.get_by_role("heading", name=f"Review: group “{first.group}”")).to_be_visible()
    expect(review.locator(".draft-text")).to_have_text(first.text)
    title = review.locator("#draft-title")
    expect(title.locator(".badge")).to_have_text(Caption.Status.DRAFT)
    expect(title).to_contain_text(f"v1 · model · {first.model_name}")
