"""The captioner jobs end to end in the test process's executor (training and drafting in
child processes, on the tiny demo VLM): a captioner trained on the approved captions becomes
the active one, its drafts land in the review queue as model drafts and never over a
person's text, and the captioner page's quality figures come from known review outcomes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from captions.importers import dataset_import
from captions.models import Caption
from captions.selectors import review_queue
from captions.services import caption_approve, caption_create, caption_reject
from curation.models import Group, Image
from curation.services import group_create
from ml import synthetic
from training.caption_selectors import captioner_quality, group_targets, model_label
from training.execution import execute_job
from training.models import Job, JobMetric, TrainedModel, WorkerBeat

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_set(tmp_path: Path) -> Path:
    folder = tmp_path / "synthetic"
    synthetic.generate_dataset(folder, seed=0, per_relation=3, size=56)
    dataset_import(folder=folder)
    return folder


def _run(kind: str, params: dict[str, Any]) -> Job:
    job = Job.objects.create(kind=kind, params=params)
    execute_job(job.pk, worker="test")
    job.refresh_from_db()
    return job


def _captioner(name: str = "c", **fields: Any) -> TrainedModel:
    return TrainedModel.objects.create(
        kind=TrainedModel.Kind.CAPTIONER, name=name, folder=f"/models/{name}", **fields
    )


def test_too_few_approved_captions_fail_training_and_say_how_many_are_needed(
    png_factory: Any,
) -> None:
    from curation.intake import normalise_image
    from curation.services import image_store

    image = image_store(normalised=normalise_image(png_factory(1))).image
    caption_create(text="A {Thing} alone.", image=image, status=Caption.Status.APPROVED)
    job = _run(Job.Kind.TRAIN_CAPTIONER, {"name": "c"})
    assert job.status == Job.Status.FAILED
    assert "too few approved captions: 1 in the train split" in job.error
    assert "at least 3" in job.error
    assert not TrainedModel.objects.filter(kind=TrainedModel.Kind.CAPTIONER).exists()


def test_drafting_without_an_active_captioner_fails_with_a_message() -> None:
    job = _run(Job.Kind.CAPTION, {"target": "groups"})
    assert job.status == Job.Status.FAILED
    assert job.error == "there is no active captioner: train one first"
    job = _run(Job.Kind.CAPTION, {"target": "everything"})
    assert job.status == Job.Status.FAILED and "'target' must be one of groups, images" in job.error


def test_a_captioner_trains_becomes_active_and_drafts_into_the_review_queue(
    demo_set: Path, annotator: Any, settings: Any
) -> None:
    settings.RELSIM_VLM_PATH = ""  # the tiny demo model
    started = time.monotonic()
    train = _run(
        Job.Kind.TRAIN_CAPTIONER,
        {
            "name": "demo captioner",
            "config": {"image_size": 56, "max_steps": 2, "batch_size": 4, "log_every": 1},
        },
    )
    assert train.status == Job.Status.SUCCEEDED, (train.error, train.log_tail)
    model = TrainedModel.objects.get(pk=train.artifacts["model_id"])
    assert model.kind == TrainedModel.Kind.CAPTIONER and model.is_active
    assert Path(model.folder).is_dir() and Path(model.snapshot).is_file()
    assert model.metrics["train_captions"] >= 3 and model.metrics["train_groups"] >= 1
    assert list(JobMetric.objects.filter(job=train).values_list("step", flat=True)) == [1, 2]
    trained_s = time.monotonic() - started

    # Imported groups are captioned already; two new groups, one with a person's draft.
    images = list(Image.objects.order_by("id")[:4])
    fresh = group_create(title="fresh", images=images[:2])
    human = group_create(title="human", images=images[2:4])
    mine = caption_create(text="Mine: {Thing} beside {Thing}.", group=human, author=annotator)
    imported = Group.objects.exclude(pk__in=[fresh.pk, human.pk]).count()
    assert group_targets().ids == [fresh.pk]

    draft = _run(Job.Kind.CAPTION, {"target": "groups", "seed": 0})
    assert draft.status == Job.Status.SUCCEEDED, (draft.error, draft.log_tail)
    assert draft.artifacts["targets"] == 1
    assert draft.artifacts["skipped_human"] == imported + 1
    assert draft.artifacts["created"] + draft.artifacts["unusable"] == 1
    drafted = Caption.objects.filter(source=Caption.Source.MODEL)
    assert drafted.count() == draft.artifacts["created"]
    for caption in drafted:
        assert caption.group == fresh and caption.status == Caption.Status.DRAFT
        assert caption.model_name == model_label(model)
        assert caption.prompt_version == "anon-caption/v1"
        assert caption in review_queue()
    # The person's draft is untouched and nothing was drafted beside it.
    mine.refresh_from_db()
    assert mine.text == "Mine: {Thing} beside {Thing}." and mine.version == 1
    assert list(human.captions.all()) == [mine]

    # Single images: none has a filter score, so every image without a caption is a target.
    single = _run(Job.Kind.CAPTION, {"target": "images", "limit": 1, "seed": 1})
    assert single.status == Job.Status.SUCCEEDED, (single.error, single.log_tail)
    assert single.artifacts["threshold"] is None and single.artifacts["targets"] == 1
    total = time.monotonic() - started
    print(f"captioner: trained in {trained_s:.1f} s, end to end {total:.1f} s")


def test_quality_counts_each_review_outcome_per_model_and_prompt_version(
    reviewer: Any, settings: Any, png_factory: Any
) -> None:
    from curation.intake import normalise_image
    from curation.services import image_store

    settings.RELSIM_ALLOW_SELF_APPROVAL = True
    model = _captioner("one")
    other = _captioner("two")

    def draft(index: int, by: TrainedModel = model, version: str = "anon-caption/v1") -> Caption:
        image = image_store(normalised=normalise_image(png_factory(index))).image
        return caption_create(
            text="A {Animal} hides behind a {Object}.",
            image=image,
            source=Caption.Source.MODEL,
            model_name=model_label(by),
            prompt_version=version,
        )

    caption_approve(caption=draft(1), reviewer=reviewer)
    caption_approve(
        caption=draft(2), reviewer=reviewer, text="A {Animal} peers out behind a {Object}."
    )
    caption_approve(caption=draft(3), reviewer=reviewer, text="A {Animal} hides under a {Thing}.")
    caption_reject(caption=draft(4), reviewer=reviewer, reason="too-vague")
    caption_reject(caption=draft(5), reviewer=reviewer, reason="too-vague")
    caption_reject(caption=draft(6), reviewer=reviewer, reason="leaks-content")
    draft(7)
    draft(8, by=other)
    draft(9, version="anon-caption/v0")

    rows = {(q.model, q.prompt_version): q for q in captioner_quality()}
    assert set(rows) == {
        (model, "anon-caption/v1"),
        (other, "anon-caption/v1"),
        (model, "anon-caption/v0"),
    }
    q = rows[(model, "anon-caption/v1")]
    assert (q.drafts, q.unchanged, q.edited, q.pending) == (7, 1, 2, 1)
    # "hides behind" -> "peers out behind": 2 words; "behind a {Object}" -> "under a {Thing}": 2
    assert q.edit_words == [2, 2] and q.mean_edit_words == 2.0
    assert q.rejected == {"too-vague": 2, "leaks-content": 1}
    assert q.unchanged_share == pytest.approx(1 / 7)
    assert rows[(other, "anon-caption/v1")].pending == 1


def test_the_captioner_page_shows_quality_and_refuses_what_cannot_run(
    admin_client: Any, settings: Any
) -> None:
    settings.RELSIM_VLM_PATH = ""
    page = reverse("captioner_page")
    response = admin_client.get(page)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="gpu-warning"' in body and 'id="no-active-captioner"' in body
    assert "the tiny demo model&#x27;s recipe" in body or "tiny demo model" in body

    # No gpu worker, too few captions, no captioner: each form says why and starts nothing.
    response = admin_client.post(page, {"form": "train", "name": "x", "epochs": "1"})
    body = response.content.decode()
    assert response.status_code == 200 and "No worker serves the gpu queue" in body
    assert "Too few approved captions: 0 in the train split" in body
    response = admin_client.post(page, {"form": "draft", "target": "groups", "limit": "5"})
    assert "There is no active captioner" in response.content.decode()
    assert not Job.objects.exists()

    now = timezone.now()
    WorkerBeat.objects.create(name="gpu@t", queues=["gpu"], pid=1, started_at=now, last_seen=now)
    model = _captioner("ready", is_active=True)
    caption_create(
        text="A {Animal} hides.",
        image=None,
        group=group_create(title="g"),
        source=Caption.Source.MODEL,
        model_name=model_label(model),
        prompt_version="anon-caption/v1",
    )
    response = admin_client.post(
        page, {"form": "draft", "target": "images", "limit": "5", "threshold": "0.7"}
    )
    job = Job.objects.get(kind=Job.Kind.CAPTION)
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.queue == Job.Queue.GPU
    assert job.params == {"target": "images", "limit": 5, "threshold": 0.7}
    body = admin_client.get(page).content.decode()
    assert 'id="captioner-quality"' in body and "ready" in body

    second = _captioner("second")
    response = admin_client.post(reverse("captioner_activate", args=[second.pk]))
    assert response.status_code == 302
    second.refresh_from_db()
    model.refresh_from_db()
    assert second.is_active and not model.is_active
    relsim = TrainedModel.objects.create(kind=TrainedModel.Kind.RELSIM, name="r", folder="/r")
    admin_client.post(reverse("captioner_activate", args=[relsim.pk]))
    relsim.refresh_from_db()
    assert not relsim.is_active


def test_the_model_job_command_queues_captioner_jobs_with_their_options(
    django_capture_on_commit_callbacks: Any,
) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="Set by the job, not by hand: groups_file"):
        call_command("model_job", "train_captioner", "--set", "groups_file=x.json")
    with pytest.raises(CommandError, match="Unknown captioner training options: nope"):
        call_command("model_job", "train_captioner", "--set", "nope=1")
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "model_job", "train_captioner", "--set", "max_steps=5", "--no-wait", stdout=StringIO()
        )
        call_command(
            "model_job",
            "caption",
            "--target",
            "images",
            "--limit",
            "3",
            "--threshold",
            "0.6",
            "--no-wait",
            stdout=StringIO(),
        )
    train = Job.objects.get(kind=Job.Kind.TRAIN_CAPTIONER)
    assert train.queue == Job.Queue.GPU
    assert train.params == {"config": {"max_steps": 5}, "gpus": 1}
    draft = Job.objects.get(kind=Job.Kind.CAPTION)
    assert draft.params == {"target": "images", "limit": 3, "threshold": 0.6}
