"""The filter job end to end in the test process's executor (training and scoring in child
processes, on the tiny demo VLM), the scores it keeps per image and model, the pool's scores
following the active filter, the filter page's threshold for a keep-rate, and the labelling
queue serving the images the filter is least sure of."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image as PILImage
from PIL import ImageDraw

from curation.intake import normalise_image
from curation.labelling import queue_candidates
from curation.models import Image
from curation.services import image_store, interest_label_set
from training.execution import execute_job
from training.filter_jobs import score_targets
from training.filter_selectors import (
    FILTER_TINY_RECIPE,
    keep_threshold,
    labelled_set,
    score_histogram,
)
from training.models import FilterScore, Job, JobMetric, TrainedModel, WorkerBeat


def _picture(index: int, interesting: bool) -> bytes:
    """Interesting pictures are dark with a bright bar, the rest light with a small square."""
    image = PILImage.new("RGB", (64, 64), (25, 25, 40) if interesting else (235, 235, 225))
    draw = ImageDraw.Draw(image)
    offset = (index * 7) % 30
    if interesting:
        draw.rectangle((4, offset, 60, offset + 8), fill=(250, 230, 60))
    else:
        draw.rectangle((offset, offset, offset + 12, offset + 12), fill=(200, 60, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _image(index: int, interesting: bool = False) -> Image:
    return image_store(normalised=normalise_image(_picture(index, interesting))).image


def _labelled(annotator: Any, yes: int, no: int) -> list[Image]:
    images = [_image(i, True) for i in range(yes)] + [_image(100 + i) for i in range(no)]
    for image in images[:yes]:
        interest_label_set(image=image, annotator=annotator, interesting=True)
    for image in images[yes:]:
        interest_label_set(image=image, annotator=annotator, interesting=False)
    return images


def _run(params: dict[str, Any]) -> Job:
    job = Job.objects.create(kind=Job.Kind.FILTER, params=params)
    execute_job(job.pk, worker="test")
    job.refresh_from_db()
    return job


def _filter(name: str, scores: dict[int, float], **fields: Any) -> TrainedModel:
    model = TrainedModel.objects.create(
        kind=TrainedModel.Kind.FILTER, name=name, folder=f"/models/{name}", **fields
    )
    FilterScore.objects.bulk_create(
        FilterScore(image_id=pk, model=model, score=score) for pk, score in scores.items()
    )
    return model


# --- The job ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_too_few_labels_fail_the_job_and_say_how_many_are_needed(annotator: Any) -> None:
    _labelled(annotator, yes=3, no=0)
    job = _run({"name": "f"})
    assert job.status == Job.Status.FAILED
    assert job.error.startswith("too few labels: 3 yes / 0 no; label at least 3 images of each")
    assert not TrainedModel.objects.filter(kind=TrainedModel.Kind.FILTER).exists()


@pytest.mark.django_db(transaction=True)
def test_ties_are_left_out_and_each_image_counts_once_by_its_majority(
    annotator: Any, make_user: Any
) -> None:
    second, third = make_user("second", "annotator"), make_user("third", "annotator")
    yes, tie, no = _image(1, True), _image(2), _image(3)
    for user, answers in ((annotator, (True, True, False)), (second, (True, False, False))):
        for image, answer in zip((yes, tie, no), answers, strict=True):
            interest_label_set(image=image, annotator=user, interesting=answer)
    interest_label_set(image=yes, annotator=third, interesting=False)  # 2 yes to 1 no
    labels = labelled_set()
    assert [(i.image_id, i.interesting) for i in labels.images] == [(yes.pk, True), (no.pk, False)]
    assert labels.ties == 1
    assert "1 yes / 1 no (1 tied image(s) left out)" in labels.too_few()


@pytest.mark.django_db(transaction=True)
def test_a_filter_job_trains_scores_the_pool_and_becomes_the_pools_filter(
    annotator: Any, settings: Any
) -> None:
    settings.RELSIM_VLM_PATH = ""  # the tiny demo model
    labelled = _labelled(annotator, yes=4, no=4)
    unlabelled = _image(50)
    started = time.monotonic()
    job = _run(
        {
            "name": "demo filter",
            "balance": "balanced",
            "score": "all",
            "config": {"image_size": 56, "max_steps": 3, "batch_size": 4, "log_every": 1},
        }
    )
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.log_tail)
    model = TrainedModel.objects.get(pk=job.artifacts["model_id"])
    assert model.kind == TrainedModel.Kind.FILTER and model.is_active
    assert Path(model.folder).is_dir() and model.job == job
    assert model.metrics["imbalance"] == "balanced"
    assert (model.metrics["labels_yes"], model.metrics["labels_no"]) == (4, 4)
    assert 0.0 <= model.metrics["auc_labelled"] <= 1.0
    assert list(JobMetric.objects.filter(job=job).values_list("step", flat=True)) == [1, 2, 3]
    # Every image scored once by this model, and the pool shows those very scores.
    scores = dict(FilterScore.objects.filter(model=model).values_list("image_id", "score"))
    assert set(scores) == {image.pk for image in [*labelled, unlabelled]}
    assert all(0.0 <= score <= 1.0 for score in scores.values())
    pool = dict(Image.objects.values_list("pk", "filter_score"))
    assert pool == pytest.approx(scores)

    # Scoring only new images with the same model: none yet, so no child runs at all; an
    # image added since is the one a next pass would score.
    again = _run({"model": model.pk, "score": "new", "activate": False})
    assert again.status == Job.Status.SUCCEEDED, (again.error, again.log_tail)
    assert again.artifacts["scored"] == 0 and again.artifacts["auc_labelled"] is not None
    added = _image(51)
    assert list(score_targets(model, "new")) == [added]
    assert list(score_targets(model, "none")) == []  # the labelled images are all scored
    print(f"filter job end to end: {time.monotonic() - started:.1f} s")


@pytest.mark.django_db(transaction=True)
def test_bad_params_fail_the_job_with_a_message(annotator: Any) -> None:
    _labelled(annotator, yes=3, no=3)
    assert "'score' must be one of all, new, none" in _run({"score": "some"}).error
    assert "there is no interest filter model #999" in _run({"model": 999}).error
    assert "set by the job, not by hand: imbalance" in _run({"config": {"imbalance": "none"}}).error
    assert "'balance' must be one of weighted, balanced" in _run({"balance": "none"}).error


# --- Scores, the pool and the keep-rate -------------------------------------------------------


@pytest.mark.django_db
def test_the_threshold_for_a_keep_rate_and_the_labelled_sets_precision_and_recall(
    annotator: Any,
) -> None:
    images = [_image(i) for i in range(10)]
    scores = {image.pk: s for image, s in zip(images, [i / 10 for i in range(10)], strict=True)}
    model = _filter("known", scores)
    # Labelled: 0.9 yes, 0.8 no, 0.7 yes, 0.1 yes, 0.0 no.
    for index, answer in ((9, True), (8, False), (7, True), (1, True), (0, False)):
        interest_label_set(image=images[index], annotator=annotator, interesting=answer)
    found = keep_threshold(model, 0.3)
    assert found is not None
    assert found.threshold == pytest.approx(0.7)
    assert (found.kept, found.total, found.labelled) == (3, 10, 5)
    assert found.precision == pytest.approx(2 / 3)  # 0.9 yes, 0.8 no, 0.7 yes
    assert found.recall == pytest.approx(2 / 3)  # the yes at 0.1 is dropped
    everything = keep_threshold(model, 1.0)
    assert everything is not None and everything.threshold == 0.0 and everything.recall == 1.0
    bins = score_histogram(model)
    assert len(bins) == 20 and sum(b.count for b in bins) == 10
    assert [b.count for b in bins[::2]] == [1] * 10  # 0.0, 0.1, ... each in an even bin


@pytest.mark.django_db
def test_a_score_of_one_counts_in_the_last_bin() -> None:
    model = _filter("edges", {_image(0).pk: 1.0, _image(1).pk: 0.0, _image(2).pk: 0.5})
    counts = [b.count for b in score_histogram(model)]
    assert counts[0] == 1 and counts[10] == 1 and counts[19] == 1


@pytest.fixture
def admin_client(admin_user_role: Any, settings: Any) -> Client:
    settings.RELSIM_VLM_PATH = ""  # the tiny demo model, and so its recipe
    client = Client()
    client.force_login(admin_user_role)
    return client


@pytest.mark.django_db
def test_the_filter_page_shows_the_histogram_and_the_keep_rate_figures(
    admin_client: Client, annotator: Any
) -> None:
    images = [_image(i) for i in range(10)]
    model = _filter("known", {image.pk: i / 10 for i, image in enumerate(images)}, is_active=True)
    interest_label_set(image=images[9], annotator=annotator, interesting=True)
    interest_label_set(image=images[8], annotator=annotator, interesting=False)
    response = admin_client.get(reverse("filter_page"), {"keep": "0.2"})
    assert response.status_code == 200
    text = response.content.decode()
    assert 'id="filter-histogram-data"' in text and "uPlot.iife.min.js" in text
    assert response.context["histogram"]["counts"] == [b.count for b in score_histogram(model)]
    assert response.context["found"].threshold == pytest.approx(0.8)
    assert '<dd data-testid="threshold">0.8000' in text
    assert '<dd data-testid="precision">50.0%</dd>' in text
    assert '<dd data-testid="recall">100.0%</dd>' in text

    unasked = admin_client.get(reverse("filter_page")).context["found"]
    assert unasked.keep_rate == 0.1 and unasked.threshold == pytest.approx(0.9)

    refused = admin_client.get(reverse("filter_page"), {"keep": "0"})
    assert "The keep rate must be more than 0 and at most 1." in refused.content.decode()
    assert refused.context["found"] is None


@pytest.mark.django_db
def test_the_filter_page_says_when_there_are_no_labels_or_no_filter(admin_client: Client) -> None:
    text = admin_client.get(reverse("filter_page")).content.decode()
    assert 'id="no-active-filter"' in text
    _filter("unlabelled", {_image(0).pk: 0.3, _image(1).pk: 0.6}, is_active=True)
    text = admin_client.get(reverse("filter_page"), {"keep": "0.5"}).content.decode()
    assert "There are no interest labels, so no precision or recall." in text


@pytest.mark.django_db
def test_the_form_refuses_without_a_gpu_worker_or_with_too_few_labels(
    admin_client: Client, annotator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _labelled(annotator, yes=1, no=5)
    form = admin_client.get(reverse("filter_page")).context["form"]
    assert {name: form[name].value() for name in ("epochs", "batch_size", "image_size")} == {
        name: FILTER_TINY_RECIPE[name] for name in ("epochs", "batch_size", "image_size")
    }
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data["activate"] = "on"
    with django_capture_on_commit_callbacks():
        text = admin_client.post(reverse("filter_page"), data).content.decode()
    assert "No worker serves the gpu queue" in text
    assert "Too few labels: 1 yes / 5 no; label at least 3 images of each" in text
    assert not Job.objects.filter(kind=Job.Kind.FILTER).exists()

    now = timezone.now()
    WorkerBeat.objects.create(name="gpu@t", queues=["gpu"], pid=1, started_at=now, last_seen=now)
    _labelled(annotator, yes=3, no=0)
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(reverse("filter_page"), {**data, "epochs": "2"})
    job = Job.objects.get(kind=Job.Kind.FILTER)
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.queue == Job.Queue.GPU and len(callbacks) == 1
    assert job.params == {
        "score": "all",
        "activate": True,
        "name": "interest filter",
        "config": {"epochs": 2},
        "balance": "weighted",
    }


@pytest.mark.django_db
def test_making_a_filter_active_brings_its_scores_to_the_pool(admin_client: Client) -> None:
    first, second, third = _image(0), _image(1), _image(2)
    old = _filter("old", {first.pk: 0.9, second.pk: 0.1, third.pk: 0.5}, is_active=True)
    Image.objects.update(filter_score=None)
    new = _filter("new", {first.pk: 0.2, second.pk: 0.8})
    response = admin_client.post(reverse("filter_activate", args=[new.pk]))
    assert response.status_code == 302
    new.refresh_from_db()
    old.refresh_from_db()
    assert new.is_active and not old.is_active
    pool = dict(Image.objects.values_list("pk", "filter_score"))
    assert pool == {first.pk: 0.2, second.pk: 0.8, third.pk: None}  # the new one did not score it
    # The pool page sorts by the active filter's scores.
    pool_page = admin_client.get(reverse("pool"), {"sort": "score-high"})
    assert [image.pk for image in pool_page.context["page"].images] == [second.pk, first.pk]


# --- Active learning ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_uncertain_order_serves_scores_nearest_one_half_first(
    annotator: Any, make_user: Any, settings: Any
) -> None:
    images = [_image(i) for i in range(5)]
    for image, score in zip(images, [0.9, 0.45, None, 0.1, 0.6], strict=True):
        Image.objects.filter(pk=image.pk).update(filter_score=score)
    interest_label_set(image=images[1], annotator=make_user("other", "annotator"), interesting=True)
    ids = [image.pk for image in images]
    assert queue_candidates(annotator) == [ids[0], ids[2], ids[3], ids[4]]  # oldest first
    settings.RELSIM_LABEL_ORDER = "uncertain"
    # 0.45 is labelled already; then 0.6, 0.9 and 0.1 (equally unsure: oldest first), unscored.
    assert queue_candidates(annotator) == [ids[4], ids[0], ids[3], ids[2]]
