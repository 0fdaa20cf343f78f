"""The model pages: the list with its indexes, making a model active, importing a checkpoint
folder, and the forms that start relsim training and index builds."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from captions.models import Caption
from captions.services import caption_create
from curation.intake import normalise_image
from curation.services import group_create, image_store
from training.model_forms import relsim_option_hints
from training.model_jobs import RESERVED_OPTIONS, TINY_RECIPE, relsim_option_names
from training.models import EmbeddingIndex, Job, JobMetric, TrainedModel, WorkerBeat

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A relsim checkpoint of a tiny model, saved by ml as a training run saves one."""
    from ml.relsim import RelsimConfig, build_relsim_model, save_checkpoint
    from ml.vlm.backbone import build_tiny_vlm

    root = tmp_path_factory.mktemp("relsim")
    backbone = build_tiny_vlm(root / "tiny-vlm", seed=0)
    model = build_relsim_model(RelsimConfig(backbone=str(backbone), image_size=56), seed=0)
    return save_checkpoint(model, root / "checkpoint-3", global_step=3)


@pytest.fixture
def admin_client(admin_user_role: Any, data_dir: Path, settings: Any) -> Client:
    settings.RELSIM_VLM_PATH = ""  # the tiny demo model, and so its recipe
    client = Client()
    client.force_login(admin_user_role)
    return client


@pytest.fixture
def gpu_worker() -> WorkerBeat:
    now = timezone.now()
    return WorkerBeat.objects.create(
        name="gpu0@test", queues=["gpu"], pid=1, gpus=2, started_at=now, last_seen=now
    )


def _import_root(data_dir: Path) -> Path:
    root = data_dir / "imports"
    root.mkdir(exist_ok=True)
    return root


def _relsim(name: str, **fields: Any) -> TrainedModel:
    return TrainedModel.objects.create(
        kind=TrainedModel.Kind.RELSIM, name=name, folder=f"/models/{name}", **fields
    )


# --- The list and the active model --------------------------------------------------------


def test_the_list_shows_each_model_with_its_job_snapshot_metrics_and_indexes(
    admin_client: Client,
) -> None:
    job = Job.objects.create(kind=Job.Kind.TRAIN_RELSIM, status=Job.Status.SUCCEEDED)
    JobMetric.objects.create(job=job, step=4, values={"loss": 0.5})
    model = _relsim(
        "demo",
        job=job,
        base_vlm="/models/tiny-vlm",
        snapshot="/data/exports/relsim-export-7.zip",
        metrics={"step": 4, "loss": 0.123456789},
        is_active=True,
    )
    embed = Job.objects.create(kind=Job.Kind.EMBED, status=Job.Status.SUCCEEDED)
    EmbeddingIndex.objects.create(model=model, folder="/idx", count=42, dim=384, job=embed)
    _relsim("older")

    page = admin_client.get(reverse("model_list")).content.decode()
    assert "demo" in page and "older" in page
    assert page.count('data-testid="active-badge"') == 1
    assert "/models/tiny-vlm" in page and "relsim-export-7.zip" in page
    assert f'href="{reverse("job_detail", args=[job.pk])}"' in page
    assert "<dt>loss</dt><dd>0.1235</dd>" in page
    assert "42 images, dim 384" in page
    assert f'href="{reverse("job_detail", args=[embed.pk])}"' in page
    assert reverse("train_relsim") in page and reverse("model_import") in page
    assert reverse("embed_index", args=[model.pk]) in page
    assert "No worker serves the gpu queue" in page


def test_making_a_model_active_leaves_one_active_model_of_its_kind(admin_client: Client) -> None:
    first = _relsim("first", is_active=True)
    second = _relsim("second")
    response = admin_client.post(reverse("model_activate", args=[second.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("model_list")
    active = TrainedModel.objects.filter(kind=TrainedModel.Kind.RELSIM, is_active=True)
    assert list(active) == [second]
    first.refresh_from_db()
    assert not first.is_active


def test_activation_is_only_a_post_and_an_unknown_model_is_not_found(
    admin_client: Client,
) -> None:
    model = _relsim("m")
    assert admin_client.get(reverse("model_activate", args=[model.pk])).status_code == 405
    assert admin_client.post(reverse("model_activate", args=[model.pk + 1])).status_code == 404
    model.refresh_from_db()
    assert not model.is_active


def test_the_navigation_links_models_for_admins_only(admin_client: Client, annotator: Any) -> None:
    assert reverse("model_list") in admin_client.get("/").content.decode()
    client = Client()
    client.force_login(annotator)
    assert reverse("model_list") not in client.get("/").content.decode()


# --- Importing a checkpoint ---------------------------------------------------------------


def test_a_checkpoint_folder_under_an_import_root_becomes_a_relsim_model(
    admin_client: Client, admin_user_role: Any, checkpoint: Path, data_dir: Path
) -> None:
    folder = _import_root(data_dir) / "mine"
    shutil.copytree(checkpoint, folder)
    response = admin_client.post(
        reverse("model_import"), {"path": str(folder), "name": "imported", "activate": "on"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("model_list")
    model = TrainedModel.objects.get()
    assert model.kind == TrainedModel.Kind.RELSIM and model.name == "imported"
    assert model.folder == str(folder.resolve())
    assert (
        model.base_vlm
        == json.loads((folder / "relsim_config.json").read_text())["config"]["backbone"]
    )
    assert model.is_active and model.created_by == admin_user_role and model.job is None

    again = admin_client.post(reverse("model_import"), {"path": str(folder)})
    assert again.status_code == 200 and "already model #" in again.content.decode()
    assert TrainedModel.objects.count() == 1


def test_a_checkpoint_in_the_releases_own_layout_takes_its_base_model_from_the_adapter(
    admin_client: Client, checkpoint: Path, data_dir: Path
) -> None:
    folder = _import_root(data_dir) / "release"
    shutil.copytree(checkpoint, folder)
    (folder / "relsim_config.json").unlink()
    adapter = json.loads((folder / "adapter_config.json").read_text())
    # The release lists its LoRA targets by name and records its base model on the hub.
    adapter["target_modules"] = ["q_proj", "v_proj"]
    adapter["base_model_name_or_path"] = "Qwen/Qwen2.5-VL-7B-Instruct"
    (folder / "adapter_config.json").write_text(json.dumps(adapter))
    response = admin_client.post(reverse("model_import"), {"path": str(folder)})
    assert response.status_code == 302
    model = TrainedModel.objects.get()
    assert model.name == "release" and model.base_vlm == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert not model.is_active


def test_a_folder_that_is_not_a_model_is_refused_and_records_nothing(
    admin_client: Client, data_dir: Path
) -> None:
    folder = _import_root(data_dir) / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not a model")
    response = admin_client.post(reverse("model_import"), {"path": str(folder)})
    assert response.status_code == 200
    page = response.content.decode()
    assert "is not a relsim model: it has no projection_and_config.pt" in page
    assert TrainedModel.objects.count() == 0


def test_a_checkpoint_of_another_kind_is_refused_saying_what_it_is(
    admin_client: Client, checkpoint: Path, data_dir: Path
) -> None:
    folder = _import_root(data_dir) / "tuned-clip"
    shutil.copytree(checkpoint, folder)
    (folder / "tuned_config.json").write_text("{}")
    response = admin_client.post(reverse("model_import"), {"path": str(folder)})
    assert "a tuned baseline (CLIP or DINO) checkpoint, not a relsim model" in (
        response.content.decode()
    )
    assert TrainedModel.objects.count() == 0


def test_an_incomplete_checkpoint_is_refused(
    admin_client: Client, checkpoint: Path, data_dir: Path
) -> None:
    folder = _import_root(data_dir) / "half"
    shutil.copytree(checkpoint, folder)
    (folder / "adapter_model.safetensors").unlink()
    response = admin_client.post(reverse("model_import"), {"path": str(folder)})
    assert "incomplete relsim checkpoint: adapter_model.safetensors missing" in (
        response.content.decode()
    )
    assert TrainedModel.objects.count() == 0


def test_a_path_outside_the_import_roots_is_refused(admin_client: Client, checkpoint: Path) -> None:
    response = admin_client.post(reverse("model_import"), {"path": str(checkpoint)})
    assert response.status_code == 200
    assert "The path must be under an import root" in response.content.decode()
    assert TrainedModel.objects.count() == 0


# --- The training form --------------------------------------------------------------------


def _form_data(client: Client, **changes: Any) -> dict[str, Any]:
    """What the page's form sends back untouched, with `changes` typed in."""
    form = client.get(reverse("train_relsim")).context["form"]
    data: dict[str, Any] = {}
    for name in form.fields:
        value = form[name].value()
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = str(value)
    for name, value in changes.items():
        if value is False:
            data.pop(name, None)
        else:
            data[name] = "on" if value is True else str(value)
    return data


def _snapshot(data_dir: Path, lines: int) -> Job:
    exports = data_dir / "exports"
    exports.mkdir(exist_ok=True)
    path = exports / f"snapshot-{lines}.zip"
    rows = "".join(
        json.dumps({"image_hash": f"{n:032x}", "url_link": "", "caption": "A {Object}."}) + "\n"
        for n in range(lines)
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("anonymous_captions_train.jsonl", rows)
    return Job.objects.create(
        kind=Job.Kind.EXPORT_DATASET,
        status=Job.Status.SUCCEEDED,
        artifacts={"path": str(path), "manifest": {"counts": {"train_lines": lines}}},
    )


def _post(client: Client, data: dict[str, Any], capture: Any) -> Any:
    with capture() as callbacks:
        response = client.post(reverse("train_relsim"), data)
    response.callbacks = callbacks
    return response


def _text(response: Any) -> str:
    return response.content.decode()


def test_the_form_has_a_field_for_every_option_the_job_does_not_set_itself() -> None:
    assert set(relsim_option_hints()) == relsim_option_names() - RESERVED_OPTIONS


def test_the_form_starts_from_the_tiny_recipe_and_says_so(admin_client: Client) -> None:
    response = admin_client.get(reverse("train_relsim"))
    form = response.context["form"]
    for name, value in TINY_RECIPE.items():
        assert form[name].value() == value, name
    assert form["lora_targets"].value() == "q_proj, v_proj"
    assert form["max_steps"].value() is None
    page = response.content.decode()
    assert "the tiny demo model's recipe" in page
    assert '<details id="advanced-options"' in page
    assert 'name="grad_clip"' in page and 'name="data_dir"' not in page
    assert "Export the approved captions now" in page
    assert "No worker serves the gpu queue" in page


def test_a_configured_vlm_gets_the_papers_recipe(
    admin_client: Client, settings: Any, tmp_path: Path
) -> None:
    settings.RELSIM_VLM_PATH = str(tmp_path)
    response = admin_client.get(reverse("train_relsim"))
    assert response.context["form"]["batch_size"].value() == 64
    assert response.context["form"]["image_size"].value() == 448
    assert "the paper's recipe" in response.content.decode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"image_size": 100}, "image size must be a multiple of 28"),
        ({"finetune": "lora", "freeze_vision": False}, "keeps its vision tower frozen"),
        ({"mixed_precision": "fp8"}, "mixed_precision must be"),
    ],
)
def test_options_the_config_refuses_are_refused_with_its_message(
    admin_client: Client,
    gpu_worker: WorkerBeat,
    django_capture_on_commit_callbacks: Any,
    data_dir: Path,
    changes: dict[str, Any],
    message: str,
) -> None:
    export = _snapshot(data_dir, 3)
    data = _form_data(admin_client, snapshot=export.pk, **changes)
    response = _post(admin_client, data, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert "The training options are not valid" in _text(response)
    assert message in _text(response)
    assert Job.objects.filter(kind=Job.Kind.TRAIN_RELSIM).count() == 0


def test_without_a_gpu_worker_nothing_is_queued_and_the_page_says_how_to_start_one(
    admin_client: Client, django_capture_on_commit_callbacks: Any, data_dir: Path
) -> None:
    export = _snapshot(data_dir, 3)
    data = _form_data(admin_client, snapshot=export.pk)
    response = _post(admin_client, data, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert "No worker serves the gpu queue" in _text(response)
    assert "celery -A config worker -Q gpu" in _text(response)
    assert Job.objects.filter(kind=Job.Kind.TRAIN_RELSIM).count() == 0
    assert response.callbacks == []


def test_a_worker_on_the_cpu_queue_only_does_not_count(
    admin_client: Client, django_capture_on_commit_callbacks: Any, data_dir: Path
) -> None:
    now = timezone.now()
    WorkerBeat.objects.create(name="cpu@test", queues=["cpu"], started_at=now, last_seen=now)
    data = _form_data(admin_client, snapshot=_snapshot(data_dir, 3).pk)
    response = _post(admin_client, data, django_capture_on_commit_callbacks)
    assert "No worker serves the gpu queue" in _text(response)
    assert not Job.objects.filter(kind=Job.Kind.TRAIN_RELSIM).exists()


def test_a_snapshot_with_fewer_than_two_training_images_is_refused(
    admin_client: Client,
    gpu_worker: WorkerBeat,
    django_capture_on_commit_callbacks: Any,
    data_dir: Path,
) -> None:
    export = _snapshot(data_dir, 1)
    response = _post(
        admin_client,
        _form_data(admin_client, snapshot=export.pk),
        django_capture_on_commit_callbacks,
    )
    assert f"Export #{export.pk} holds 1 captioned training image(s)" in _text(response)
    assert not Job.objects.filter(kind=Job.Kind.TRAIN_RELSIM).exists()


def test_exporting_now_needs_two_approved_training_images(
    admin_client: Client,
    gpu_worker: WorkerBeat,
    django_capture_on_commit_callbacks: Any,
    png_factory: Any,
    admin_user_role: Any,
) -> None:
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(4)]
    train = group_create(title="train", images=images[:2])
    test = group_create(title="test", images=images[2:], split="test")
    caption_create(text="A {Object}.", group=test, status=Caption.Status.APPROVED)
    draft = caption_create(text="Two {Object}s.", group=train)
    response = _post(admin_client, _form_data(admin_client), django_capture_on_commit_callbacks)
    assert "The approved captions give 0 captioned training image(s)" in _text(response)
    assert not Job.objects.filter(kind=Job.Kind.TRAIN_RELSIM).exists()

    Caption.objects.filter(pk=draft.pk).update(status=Caption.Status.APPROVED)
    response = _post(admin_client, _form_data(admin_client), django_capture_on_commit_callbacks)
    job = Job.objects.get(kind=Job.Kind.TRAIN_RELSIM)
    assert response.status_code == 302
    assert "snapshot_job" not in job.params and job.created_by == admin_user_role


def test_a_valid_form_queues_a_gpu_job_with_only_the_options_that_were_changed(
    admin_client: Client,
    admin_user_role: Any,
    gpu_worker: WorkerBeat,
    django_capture_on_commit_callbacks: Any,
    data_dir: Path,
) -> None:
    export = _snapshot(data_dir, 3)
    data = _form_data(
        admin_client,
        name="first run",
        snapshot=export.pk,
        max_steps=20,
        lr="0.001",
        batch_size=TINY_RECIPE["batch_size"],  # the recipe's own value: not stored
        lora_targets="q_proj, k_proj v_proj",
        symmetric_loss=True,
        gpus=2,
        activate=False,
    )
    response = _post(admin_client, data, django_capture_on_commit_callbacks)
    job = Job.objects.get(kind=Job.Kind.TRAIN_RELSIM)
    assert response.status_code == 302
    assert response["Location"] == reverse("job_detail", args=[job.pk])
    assert len(response.callbacks) == 1  # sent to the broker once the request commits
    assert job.status == Job.Status.PENDING and job.queue == Job.Queue.GPU
    assert job.created_by == admin_user_role
    assert job.params == {
        "name": "first run",
        "snapshot_job": export.pk,
        "config": {
            "max_steps": 20,
            "lr": 0.001,
            "lora_targets": ["q_proj", "k_proj", "v_proj"],
            "symmetric_loss": True,
        },
        "gpus": 2,
        "activate": False,
    }


def test_the_form_sent_back_unchanged_stores_no_options(
    admin_client: Client,
    gpu_worker: WorkerBeat,
    django_capture_on_commit_callbacks: Any,
    data_dir: Path,
) -> None:
    export = _snapshot(data_dir, 2)
    data = _form_data(admin_client, snapshot=export.pk)
    _post(admin_client, data, django_capture_on_commit_callbacks)
    job = Job.objects.get(kind=Job.Kind.TRAIN_RELSIM)
    assert job.params["config"] == {} and job.params["activate"] is True
    assert job.params["gpus"] == 1 and job.params["name"] == "relsim"


def test_gpus_are_between_one_and_eight(
    admin_client: Client,
    gpu_worker: WorkerBeat,
    django_capture_on_commit_callbacks: Any,
    data_dir: Path,
) -> None:
    data = _form_data(admin_client, snapshot=_snapshot(data_dir, 2).pk, gpus=9)
    response = _post(admin_client, data, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert not Job.objects.filter(kind=Job.Kind.TRAIN_RELSIM).exists()


def test_more_gpus_than_any_live_gpu_worker_has_are_refused(
    admin_client: Client,
    gpu_worker: WorkerBeat,
    django_capture_on_commit_callbacks: Any,
    data_dir: Path,
) -> None:
    data = _form_data(admin_client, snapshot=_snapshot(data_dir, 2).pk, gpus=4)
    response = _post(admin_client, data, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert "No live gpu worker has 4 GPUs: the most any has is 2." in _text(response)
    assert not Job.objects.filter(kind=Job.Kind.TRAIN_RELSIM).exists()
    # One GPU is always there to ask for, even from a CPU-only demo worker.
    WorkerBeat.objects.filter(pk=gpu_worker.pk).update(gpus=0)
    data = _form_data(admin_client, snapshot=_snapshot(data_dir, 2).pk, gpus=1)
    _post(admin_client, data, django_capture_on_commit_callbacks)
    assert Job.objects.filter(kind=Job.Kind.TRAIN_RELSIM).count() == 1


def test_a_train_file_outside_the_import_roots_is_refused(
    admin_client: Client,
    gpu_worker: WorkerBeat,
    django_capture_on_commit_callbacks: Any,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    outside = tmp_path / "captions.jsonl"
    outside.write_text("")
    data = _form_data(admin_client, snapshot=_snapshot(data_dir, 2).pk, train_file=outside)
    response = _post(admin_client, data, django_capture_on_commit_callbacks)
    assert "The path must be under an import root" in _text(response)
    assert not Job.objects.filter(kind=Job.Kind.TRAIN_RELSIM).exists()


# --- Building an index --------------------------------------------------------------------


def test_build_an_index_queues_an_embed_job_for_that_model(
    admin_client: Client,
    gpu_worker: WorkerBeat,
    django_capture_on_commit_callbacks: Any,
    checkpoint: Path,
) -> None:
    model = TrainedModel.objects.create(
        kind=TrainedModel.Kind.RELSIM, name="m", folder=str(checkpoint)
    )
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(reverse("embed_index", args=[model.pk]), {"batch_size": 8})
    job = Job.objects.get(kind=Job.Kind.EMBED)
    assert response["Location"] == reverse("job_detail", args=[job.pk])
    assert job.params == {"model": model.pk, "batch_size": 8} and job.queue == Job.Queue.GPU
    assert len(callbacks) == 1


def test_build_an_index_without_a_gpu_worker_queues_nothing_and_says_why(
    admin_client: Client, checkpoint: Path
) -> None:
    model = TrainedModel.objects.create(
        kind=TrainedModel.Kind.RELSIM, name="m", folder=str(checkpoint)
    )
    response = admin_client.post(reverse("embed_index", args=[model.pk]), follow=True)
    assert "No index was started: No worker serves the gpu queue" in response.content.decode()
    assert not Job.objects.filter(kind=Job.Kind.EMBED).exists()
    assert admin_client.get(reverse("embed_index", args=[model.pk])).status_code == 405


def test_only_relsim_models_build_indexes(admin_client: Client, gpu_worker: WorkerBeat) -> None:
    captioner = TrainedModel.objects.create(
        kind=TrainedModel.Kind.CAPTIONER, name="c", folder="/models/c"
    )
    assert admin_client.post(reverse("embed_index", args=[captioner.pk])).status_code == 404
