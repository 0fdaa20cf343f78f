"""Baseline indexes: the embedding job indexes the pool with a baseline (here the weight-free
colour histogram) instead of a relsim model, incrementally, and the models page lists them and
starts one. Only the first test runs child processes (each spends seconds importing torch)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from curation.intake import normalise_image
from curation.models import Image
from curation.services import image_store
from evaluation.benchmark_selectors import available_methods
from training import model_paths
from training import services as job_services
from training.execution import execute_job
from training.models import EmbeddingIndex, Job, WorkerBeat
from training.search import index_vectors

HISTOGRAM_DIM = 8**3  # ColourHistogram's default: 8 levels per channel


@pytest.fixture
def pool(png_factory: Any) -> list[Image]:
    return [image_store(normalised=normalise_image(png_factory(n))).image for n in range(3)]


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Jobs the page enqueues, kept here instead of sent to a broker."""
    calls: list[tuple[int, str]] = []
    monkeypatch.setattr(
        job_services, "job_enqueue", lambda *, job_id, queue: calls.append((job_id, queue))
    )
    return calls


def _run(params: dict[str, Any]) -> Job:
    job = Job.objects.create(kind=Job.Kind.EMBED, params=params)
    execute_job(job.pk, worker="test")
    job.refresh_from_db()
    return job


# --- The job ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_histogram_index_is_recorded_then_updated_with_only_the_pools_changes(
    pool: list[Image], png_factory: Any
) -> None:
    out = StringIO()
    call_command(
        "model_job", "embed", "--baseline", "histogram", "--here", stdout=out, stderr=StringIO()
    )
    first = Job.objects.get()
    assert first.status == Job.Status.SUCCEEDED, (first.error, first.log_tail)
    index = EmbeddingIndex.objects.get(pk=first.artifacts["index_id"])
    assert (index.baseline, index.model, index.job) == ("histogram", None, first)
    assert (index.count, index.dim) == (3, HISTOGRAM_DIM)
    ids, vectors = index_vectors(index)
    assert list(ids) == [image.pk for image in pool]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-2)
    meta = json.loads((Path(index.folder) / "meta.json").read_text())
    assert (meta["baseline"], meta["models"], meta["stand_in"]) == ("histogram", {}, False)
    # Benchmarks offer each baseline's newest index as a method named by the baseline.
    methods = {method.key: method for method in available_methods()}
    assert (methods["histogram"].index_id, methods["histogram"].kind) == (index.pk, "baseline")

    # The pool changes: only the new image is embedded, the removed one is dropped.
    added = image_store(normalised=normalise_image(png_factory(9))).image
    removed = pool[0]
    removed.delete()
    again = _run({"baseline": "histogram"})
    assert again.status == Job.Status.SUCCEEDED, (again.error, again.log_tail)
    assert (again.artifacts["embedded"], again.artifacts["kept"]) == (1, 2)
    assert "baseline histogram: 1 image(s) embedded, 2 kept" in again.log_tail
    assert "1 dropped" in again.log_tail
    items = (Path(again.artifacts["log"]).parent / "items.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in items] == [str(added.pk)]
    newer = EmbeddingIndex.objects.get(pk=again.artifacts["index_id"])
    new_ids, new_vectors = index_vectors(newer)
    assert list(new_ids) == [pool[1].pk, pool[2].pk, added.pk]
    assert np.allclose(new_vectors[:2], vectors[1:], atol=1e-3)
    assert {m.key: m.index_id for m in available_methods()}["histogram"] == newer.pk


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"baseline": "nope"}, "unknown baseline 'nope'; indexes are built of clip-i"),
        ({"baseline": "tuned-clip"}, "unknown baseline 'tuned-clip'"),
        ({"baseline": "histogram", "model": 3}, "a model or a baseline, not both"),
    ],
)
def test_a_baseline_the_app_does_not_build_fails_the_job_saying_so(
    pool: list[Image], params: dict[str, Any], message: str
) -> None:
    job = _run(params)
    assert job.status == Job.Status.FAILED
    assert message in job.error
    assert not EmbeddingIndex.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_model_baseline_needs_its_folder_set_to_a_model_of_its_kind(
    pool: list[Image], settings: Any, tmp_path: Path
) -> None:
    settings.RELSIM_VLM_PATH = str(tmp_path)  # a real set-up: no stand-ins
    settings.RELSIM_CLIP_PATH = ""
    job = _run({"baseline": "clip-i"})
    assert job.status == Job.Status.FAILED
    assert "the baseline clip-i needs its model: RELSIM_CLIP_PATH is not set" in job.error

    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    settings.RELSIM_DINO_PATH = str(not_a_model)
    job = _run({"baseline": "dino"})
    assert job.status == Job.Status.FAILED
    assert "RELSIM_DINO_PATH" in job.error and "not a model folder" in job.error

    clip_folder = tmp_path / "clip"
    clip_folder.mkdir()
    (clip_folder / "config.json").write_text(json.dumps({"model_type": "dinov2"}))
    settings.RELSIM_CLIP_PATH = str(clip_folder)
    job = _run({"baseline": "clip-i"})
    assert job.status == Job.Status.FAILED
    assert "a dinov2 model: set it to a CLIP" in job.error


@pytest.mark.django_db(transaction=True)
def test_an_empty_pool_has_nothing_to_index() -> None:
    job = _run({"baseline": "histogram"})
    assert job.status == Job.Status.FAILED
    assert job.error == "the pool holds no images to embed"


def test_the_demo_builds_clip_and_dino_stand_ins_once_and_a_real_set_up_never_does(
    data_dir: Path, settings: Any, tmp_path: Path
) -> None:
    settings.RELSIM_VLM_PATH = settings.RELSIM_CLIP_PATH = settings.RELSIM_DINO_PATH = ""
    assert model_paths.baseline_model("clip").stand_in
    clip, dino = model_paths.clip_path(), model_paths.dino_path()
    assert clip == data_dir / "models" / model_paths.TINY_CLIP_FOLDER
    assert json.loads((clip / "config.json").read_text())["model_type"] == "clip"
    assert json.loads((dino / "config.json").read_text())["model_type"] == "dinov2"
    weights = (clip / "model.safetensors").stat().st_mtime_ns
    assert model_paths.clip_path() == clip
    assert (clip / "model.safetensors").stat().st_mtime_ns == weights  # not built again

    settings.RELSIM_VLM_PATH = str(tmp_path)
    assert not model_paths.baseline_model("clip").stand_in
    with pytest.raises(ImproperlyConfigured, match="RELSIM_CLIP_PATH is not set"):
        model_paths.clip_path()
    settings.RELSIM_CLIP_PATH = str(clip)  # a folder set by hand is used as it is
    assert model_paths.clip_path() == clip.resolve()


# --- The models page ----------------------------------------------------------------------


@pytest.fixture
def admin_client(admin_user_role: Any, settings: Any) -> Client:
    settings.RELSIM_VLM_PATH = ""  # the demo: CLIP and DINO are stand-ins
    client = Client()
    client.force_login(admin_user_role)
    return client


def _index(baseline: str, data_dir: Path, *, stand_in: bool = False) -> EmbeddingIndex:
    job = Job.objects.create(
        kind=Job.Kind.EMBED,
        params={"baseline": baseline},
        status=Job.Status.SUCCEEDED,
        artifacts={"stand_in": stand_in},
    )
    return EmbeddingIndex.objects.create(
        baseline=baseline, folder=str(data_dir / baseline), count=3, dim=512, job=job
    )


@pytest.mark.django_db
def test_the_models_page_lists_baseline_indexes_and_marks_stand_ins(
    admin_client: Client, data_dir: Path
) -> None:
    old = _index("histogram", data_dir)
    new = _index("histogram", data_dir)
    clip = _index("clip-i", data_dir, stand_in=True)
    html = admin_client.get(reverse("model_list")).content.decode()
    for index in (old, new, clip):
        assert f'id="baseline-index-{index.pk}"' in html
        assert f'href="/jobs/{index.job_id}/"' in html
    row = html.split(f'id="baseline-index-{new.pk}"')[1].split("</tr>")[0]
    assert "newest" in row and "<td>3</td>" in row and "<td>512</td>" in row
    assert "newest" not in html.split(f'id="baseline-index-{old.pk}"')[1].split("</tr>")[0]
    assert "random-weight stand-in" in html.split(f'id="baseline-index-{clip.pk}"')[1]
    # The demo offers every baseline; CLIP and DINO as stand-ins, said so.
    assert 'id="baseline-stand-ins"' in html
    assert '<option value="clip-i">clip-i: CLIP image features (random-weight' in html


@pytest.mark.django_db
def test_the_form_explains_the_baselines_a_real_set_up_lacks(
    admin_client: Client, settings: Any, tmp_path: Path
) -> None:
    settings.RELSIM_VLM_PATH = str(tmp_path)
    settings.RELSIM_CLIP_PATH = settings.RELSIM_DINO_PATH = ""
    html = admin_client.get(reverse("model_list")).content.decode()
    assert 'id="baseline-stand-ins"' not in html
    unavailable = html.split('id="baseline-unavailable"')[1].split("</ul>")[0]
    assert "<strong>clip-i</strong> is not available" in unavailable
    assert "RELSIM_CLIP_PATH is not set" in unavailable
    assert "RELSIM_DINO_PATH is not set" in unavailable
    assert "histogram" not in unavailable
    assert '<option value="dino" disabled' in html


@pytest.mark.django_db
def test_the_form_starts_a_weight_free_index_on_the_cpu_queue(
    admin_client: Client,
    enqueued: list[tuple[int, str]],
    pool: list[Image],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("baseline_index_build"), {"baseline": "histogram", "full": "on"}
        )
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert (job.kind, job.queue) == (Job.Kind.EMBED, Job.Queue.CPU)
    assert job.params == {"baseline": "histogram", "full": True}
    assert enqueued == [(job.pk, "cpu")]


@pytest.mark.django_db
def test_a_model_baseline_goes_to_the_gpu_queue_and_waits_for_a_gpu_worker(
    admin_client: Client, enqueued: list[tuple[int, str]], django_capture_on_commit_callbacks: Any
) -> None:
    response = admin_client.post(reverse("baseline_index_build"), {"baseline": "clip-i"})
    assert response.status_code == 302 and response["Location"] == reverse("model_list")
    assert not Job.objects.exists()
    page = admin_client.get(reverse("model_list")).content.decode()
    assert "No index was started: No worker serves the gpu queue" in page

    now = timezone.now()
    WorkerBeat.objects.create(name="g@t", queues=["gpu"], pid=1, started_at=now, last_seen=now)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("baseline_index_build"), {"baseline": "clip-i", "batch_size": 8})
    job = Job.objects.get()
    assert (job.queue, job.params) == (Job.Queue.GPU, {"baseline": "clip-i", "batch_size": 8})
    assert enqueued == [(job.pk, "gpu")]


@pytest.mark.django_db
def test_an_unavailable_baseline_is_refused_with_the_setting_to_set(
    admin_client: Client, enqueued: list[tuple[int, str]], settings: Any, tmp_path: Path
) -> None:
    settings.RELSIM_VLM_PATH = str(tmp_path)
    settings.RELSIM_CLIP_PATH = ""
    admin_client.post(reverse("baseline_index_build"), {"baseline": "clip-i"})
    assert not Job.objects.exists() and not enqueued
    page = admin_client.get(reverse("model_list")).content.decode()
    assert "No index was started: The baseline clip-i needs its model: RELSIM_CLIP_PATH" in page


@pytest.mark.django_db
def test_an_annotator_can_neither_see_nor_start_baseline_indexes(
    annotator: Any, enqueued: list[tuple[int, str]]
) -> None:
    client = Client()
    client.force_login(annotator)
    assert client.get(reverse("model_list")).status_code == 403
    response = client.post(reverse("baseline_index_build"), {"baseline": "histogram"})
    assert response.status_code == 403
    assert not Job.objects.exists() and not enqueued
