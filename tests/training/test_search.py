"""The search page (by a pool image, a caption's text, an upload; every index side by side),
the relsim-score JSON endpoint and `manage.py relsim_score`, on small real index folders."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from curation.intake import normalise_image
from curation.models import CurrentGroup, Image
from curation.services import group_create, image_store
from curation.similarity import PerceptualHashSimilarity
from ml.search import write_index
from training import search
from training.model_paths import text_encoder_path
from training.models import EmbeddingIndex, TrainedModel

pytestmark = pytest.mark.django_db

DIM = 384
# Cosine of each pool image (by position) with image 0, chosen so the order is known.
FAN = [1.0, 0.8, 0.3, 0.9, -0.2, 0.6]
FAN_ORDER = [3, 1, 5, 2, 4]  # positions, best first, image 0 left out
CAPTIONS = [
    "A {Object} hiding behind a larger {Object}.",
    "{Animal} imitating the pose of a {Person}.",
    "A {Word} spelled out with {Object}s.",
    "Several {Object}s sorted from smallest to largest.",
    "{Food} arranged to look like a {Place}.",
    "A {Shape} cast as a shadow by an unrelated {Object}.",
]


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    # Ids come back after a rolled-back test on SQLite, and the caches are keyed by id.
    search.clear_index_caches()
    PerceptualHashSimilarity._cache = None
    yield
    search.clear_index_caches()
    PerceptualHashSimilarity._cache = None


@pytest.fixture
def pool(png_factory: Any) -> list[Image]:
    return [image_store(normalised=normalise_image(png_factory(n))).image for n in range(6)]


def fan(cosines: list[float], dim: int = DIM) -> np.ndarray:
    """Unit rows whose cosine with row 0 is cosines[i]: row i leans from axis 0 to axis i."""
    rows = np.zeros((len(cosines), dim), dtype=np.float32)
    for i, cosine in enumerate(cosines):
        rows[i, 0] = cosine
        if i:
            rows[i, i] = math.sqrt(1.0 - cosine**2)
    return rows


def make_index(
    folder: Path,
    images: list[Image],
    matrix: np.ndarray,
    *,
    model: TrainedModel | None = None,
    baseline: str = "",
) -> EmbeddingIndex:
    write_index(folder, [str(image.pk) for image in images], matrix, {"test": True})
    return EmbeddingIndex.objects.create(
        model=model,
        baseline=baseline,
        folder=str(folder),
        count=len(images),
        dim=matrix.shape[1],
    )


def active_relsim(folder: Path, name: str = "tiny relsim", base_vlm: str = "") -> TrainedModel:
    return TrainedModel.objects.create(
        kind=TrainedModel.Kind.RELSIM,
        name=name,
        folder=str(folder),
        base_vlm=base_vlm,
        is_active=True,
    )


@pytest.fixture
def relsim_index(pool: list[Image], tmp_path: Path) -> EmbeddingIndex:
    model = active_relsim(tmp_path / "checkpoint")
    return make_index(tmp_path / "relsim-index", pool, fan(FAN), model=model)


@pytest.fixture
def client(annotator: Any) -> Client:
    client = Client()
    client.force_login(annotator)
    return client


def columns(response: Any) -> dict[str, list[tuple[int, float]]]:
    return {
        entry["column"].key: [(tile.image_id, tile.score) for tile in entry["tiles"]]
        for entry in response.context["columns"]
    }


def notes(response: Any) -> dict[str, str]:
    return {entry["column"].key: entry["column"].note for entry in response.context["columns"]}


# --- by a pool image -------------------------------------------------------------------------


def test_an_image_query_ranks_the_relsim_index_by_cosine_and_leaves_the_query_out(
    client: Client, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    response = client.get(reverse("search"), {"image": pool[0].pk})
    assert response.status_code == 200
    found = columns(response)
    assert [pk for pk, _ in found["relsim"]] == [pool[n].pk for n in FAN_ORDER]
    assert [round(score, 2) for _, score in found["relsim"]] == [FAN[n] for n in FAN_ORDER]
    # The perceptual hash answers beside it, also without the query image.
    assert list(found) == ["relsim", "phash"]
    assert sorted(pk for pk, _ in found["phash"]) == sorted(p.pk for p in pool[1:])
    page = response.content.decode()
    assert "relsim: tiny relsim" in page and "perceptual hash" in page


def test_k_limits_each_column(
    client: Client, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    response = client.get(reverse("search"), {"image": pool[0].pk, "k": 2})
    found = columns(response)
    assert [pk for pk, _ in found["relsim"]] == [pool[3].pk, pool[1].pk]
    assert len(found["phash"]) == 2


def test_each_result_links_its_page_search_like_this_and_add_to_the_current_group(
    client: Client, annotator: Any, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    group = group_create(title="Hiding behind", user=annotator)
    CurrentGroup.objects.create(user=annotator, group=group)
    page = client.get(reverse("search"), {"image": pool[0].pk, "k": 3}).content.decode()
    best = pool[3].pk
    assert f'href="{reverse("image_detail", args=[best])}"' in page
    assert f'href="{reverse("search")}?image={best}&amp;k=3"' in page
    assert f'action="{reverse("group_add", args=[group.pk])}"' in page
    assert f'name="images" value="{best}"' in page

    response = client.post(
        reverse("group_add", args=[group.pk]),
        {"images": str(best), "next": f"/search/?image={pool[0].pk}"},
    )
    assert response.status_code == 302 and response["Location"] == f"/search/?image={pool[0].pk}"
    assert list(group.members.values_list("image_id", flat=True)) == [best]


def test_without_a_current_group_the_page_says_how_to_get_one(
    client: Client, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    page = client.get(reverse("search"), {"image": pool[0].pk}).content.decode()
    assert "No current group" in page
    assert "Add to current group" not in page


def test_the_newest_index_of_each_baseline_answers_beside_relsim(
    client: Client, pool: list[Image], relsim_index: EmbeddingIndex, tmp_path: Path
) -> None:
    reversed_fan = [1.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    make_index(tmp_path / "clip-old", pool, fan(FAN), baseline="clip")
    make_index(tmp_path / "clip-new", pool, fan(reversed_fan), baseline="clip")
    dino = make_index(tmp_path / "dino", pool[:5], fan(FAN[:5]), baseline="dino")
    response = client.get(reverse("search"), {"image": pool[0].pk})
    titles = [entry["column"].title for entry in response.context["columns"]]
    assert titles == ["relsim: tiny relsim", "baseline: clip", "baseline: dino", "perceptual hash"]
    found = list(columns(response).values())
    assert [pk for pk, _ in found[1]] == [pool[n].pk for n in (5, 4, 3, 2, 1)]
    assert [pk for pk, _ in found[2]] == [pool[n].pk for n in (3, 1, 2, 4)]

    # An image the baseline never saw: that column says so, the others still answer.
    response = client.get(reverse("search"), {"image": pool[5].pk})
    assert notes(response)[f"baseline-{dino.pk}"] == f"Image {pool[5].pk} is not in this index."
    assert columns(response)["relsim"]


def test_an_image_missing_from_the_relsim_index_is_explained(
    client: Client, pool: list[Image], tmp_path: Path
) -> None:
    model = active_relsim(tmp_path / "checkpoint")
    make_index(tmp_path / "index", pool[:4], fan(FAN[:4]), model=model)
    response = client.get(reverse("search"), {"image": pool[4].pk})
    assert response.status_code == 200
    assert notes(response)["relsim"].startswith(f"Image {pool[4].pk} is not in this index")
    assert columns(response)["phash"]


def test_an_unknown_image_id_is_a_404_that_says_so(
    client: Client, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    response = client.get(reverse("search"), {"image": 999_999})
    assert response.status_code == 404
    assert "There is no image 999999 in the pool." in response.content.decode()


def test_without_a_relsim_index_the_page_says_so_and_links_the_models_page(
    client: Client, pool: list[Image]
) -> None:
    response = client.get(reverse("search"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "There is no relsim index yet" in page
    assert f'href="{reverse("model_list")}"' in page
    # Image queries still get the perceptual hash.
    response = client.get(reverse("search"), {"image": pool[0].pk})
    assert notes(response)["relsim"] == "There is no active relsim model yet."
    assert len(columns(response)["phash"]) == 5


def test_an_active_model_without_an_index_is_named(
    client: Client, pool: list[Image], tmp_path: Path
) -> None:
    active_relsim(tmp_path / "checkpoint", name="fresh")
    response = client.get(reverse("search"), {"image": pool[0].pk})
    assert notes(response)["relsim"] == (
        "The active relsim model (fresh) has no index yet: embed the pool with it."
    )


def test_an_index_of_an_inactive_model_is_not_used(
    client: Client, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    TrainedModel.objects.update(is_active=False)
    response = client.get(reverse("search"), {"image": pool[0].pk})
    assert notes(response)["relsim"] == "There is no active relsim model yet."


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"image": "x"}, "Pool image id: Enter a whole number."),
        ({"image": "0"}, "Pool image id: Ensure this value is greater than or equal to 1."),
        ({"k": "0", "image": "1"}, "Results: Ensure this value is greater than or equal to 1."),
        ({"k": "101", "image": "1"}, "Results: Ensure this value is less than or equal to 100."),
        ({"k": "many", "image": "1"}, "Results: Enter a whole number."),
        ({"text": "   "}, "Write the caption to search with."),
        ({"text": "x" * 31}, "A caption has at most 30 characters; this one has 31."),
        ({"image": "1", "text": "A {Object}."}, "Search by an image or by a caption, not both."),
    ],
)
def test_bad_parameters_get_the_page_back_with_a_400_saying_what_is_wrong(
    client: Client, settings: Any, params: dict[str, str], message: str
) -> None:
    settings.RELSIM_CAPTION_MAX_CHARS = 30
    response = client.get(reverse("search"), params)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_search_needs_the_annotate_permission(
    make_user: Any, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    client = Client()
    assert client.get(reverse("search")).status_code == 302  # to the login page
    client.force_login(make_user("nobody"))
    assert client.get(reverse("search"), {"image": pool[0].pk}).status_code == 403


def test_the_navigation_links_the_search_page_for_annotators(client: Client) -> None:
    assert f'href="{reverse("search")}"' in client.get("/").content.decode()


# --- by a caption's text -----------------------------------------------------------------------


def _caption_vectors() -> np.ndarray:
    from ml.vlm.text_tower import TextTower

    return TextTower(str(text_encoder_path())).encode(CAPTIONS).numpy()


@pytest.mark.slow
def test_a_text_query_goes_through_the_text_tower_into_the_relsim_index(
    client: Client, pool: list[Image], tmp_path: Path
) -> None:
    model = active_relsim(tmp_path / "checkpoint")
    make_index(tmp_path / "index", pool, _caption_vectors(), model=model)
    response = client.get(reverse("search"), {"text": CAPTIONS[3]})
    assert response.status_code == 200
    found = columns(response)
    assert list(found) == ["relsim"]  # baselines and hashes cannot take text
    first, score = found["relsim"][0]
    assert first == pool[3].pk and score == pytest.approx(1.0, abs=2e-3)
    assert len(found["relsim"]) == 6  # no image is the query: none is left out
    page = response.content.decode()
    assert "cannot take text" in page
    assert "Images whose logic matches" in page


def test_a_text_query_without_a_relsim_index_says_there_is_none(
    client: Client, pool: list[Image]
) -> None:
    response = client.get(reverse("search"), {"text": CAPTIONS[0]})
    assert response.status_code == 200
    assert notes(response) == {"relsim": "There is no active relsim model yet."}


# --- by an upload ------------------------------------------------------------------------------


def test_an_uploaded_image_is_checked_like_an_import(client: Client, pool: list[Image]) -> None:
    bad = SimpleUploadedFile("notes.png", b"not an image at all", content_type="image/png")
    response = client.post(reverse("search"), {"upload": bad})
    assert response.status_code == 400
    assert "This file was not accepted" in response.content.decode()
    response = client.post(reverse("search"), {})
    assert response.status_code == 400


def test_an_upload_without_a_relsim_model_still_gets_the_perceptual_hash(
    client: Client, pool: list[Image], png_factory: Any
) -> None:
    upload = SimpleUploadedFile("new.png", png_factory(100), content_type="image/png")
    response = client.post(reverse("search"), {"upload": upload, "k": "3"})
    assert response.status_code == 200
    assert notes(response)["relsim"] == "There is no active relsim model yet."
    assert len(columns(response)["phash"]) == 3


def test_an_upload_says_so_when_the_relsim_model_cannot_be_loaded(
    client: Client, pool: list[Image], relsim_index: EmbeddingIndex, png_factory: Any
) -> None:
    upload = SimpleUploadedFile("new.png", png_factory(100), content_type="image/png")
    response = client.post(reverse("search"), {"upload": upload})
    assert response.status_code == 200
    assert notes(response)["relsim"].startswith("The relsim model could not be loaded:")
    assert columns(response)["phash"]


def test_an_upload_already_in_the_pool_is_named_and_left_out(
    client: Client, pool: list[Image], png_factory: Any
) -> None:
    upload = SimpleUploadedFile("again.png", png_factory(2), content_type="image/png")
    response = client.post(reverse("search"), {"upload": upload})
    assert response.context["results"].pool_twin == pool[2]
    hits = [pk for pk, _ in columns(response)["phash"]]
    assert pool[2].pk not in hits and len(hits) == 5
    assert "already in the pool as" in response.content.decode()


def test_an_upload_already_in_the_pool_searches_every_index_as_that_image(
    client: Client,
    pool: list[Image],
    relsim_index: EmbeddingIndex,
    png_factory: Any,
    tmp_path: Path,
) -> None:
    """Its stored vectors answer: the relsim model (whose folder holds no checkpoint here)
    is never loaded, and the baseline indexes answer too."""
    clip = make_index(tmp_path / "clip", pool, fan(FAN), baseline="clip")
    upload = SimpleUploadedFile("again.png", png_factory(0), content_type="image/png")
    response = client.post(reverse("search"), {"upload": upload, "k": "2"})
    assert response.context["results"].pool_twin == pool[0]
    found = columns(response)
    by_image = columns(client.get(reverse("search"), {"image": pool[0].pk, "k": "2"}))
    assert found["relsim"] == by_image["relsim"] and len(found["relsim"]) == 2
    assert found[f"baseline-{clip.pk}"] == by_image[f"baseline-{clip.pk}"]
    assert pool[0].pk not in [pk for pk, _ in found["relsim"]]


# --- the JSON endpoint ---------------------------------------------------------------------------


def test_the_api_scores_a_pair_from_the_active_index(
    client: Client, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    response = client.get(reverse("relsim_score_api"), {"a": pool[0].pk, "b": pool[3].pk})
    assert response.status_code == 200
    body = response.json()
    model = relsim_index.model
    assert model is not None
    assert body["model"] == {"id": model.pk, "name": "tiny relsim"}
    assert body["index"] == relsim_index.pk
    [score] = body["scores"]
    assert (score["a"], score["b"]) == (pool[0].pk, pool[3].pk)
    assert score["score"] == pytest.approx(0.9, abs=1e-3)


def test_the_api_scores_many_pairs_posted_as_json(
    client: Client, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    pairs = [[pool[0].pk, pool[n].pk] for n in range(6)] + [[pool[1].pk, pool[2].pk]]
    response = client.post(
        reverse("relsim_score_api"), json.dumps({"pairs": pairs}), content_type="application/json"
    )
    assert response.status_code == 200
    scores = response.json()["scores"]
    assert [[s["a"], s["b"]] for s in scores] == pairs
    assert [round(s["score"], 2) for s in scores[:6]] == FAN
    # 1 and 2 lean on different axes: only their shared part along axis 0 counts.
    assert scores[6]["score"] == pytest.approx(0.8 * 0.3, abs=2e-3)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "The body must be JSON"),
        ("[]", 'non-empty list "pairs"'),
        ('{"pairs": []}', 'non-empty list "pairs"'),
        ('{"pairs": [[1]]}', "pairs[0] must be two positive image ids"),
        ('{"pairs": [[1, 2], [1, "x"]]}', "pairs[1] must be two positive image ids"),
        ('{"pairs": [[true, 2]]}', "pairs[0] must be two positive image ids"),
        ('{"pairs": [[1, -2]]}', "pairs[0] must be two positive image ids"),
        (json.dumps({"pairs": [[1, 2]] * 1001}), "At most 1000 pairs at a time"),
    ],
)
def test_the_api_refuses_bad_bodies_with_a_json_400(
    client: Client, relsim_index: EmbeddingIndex, body: str, message: str
) -> None:
    response = client.post(reverse("relsim_score_api"), body, content_type="application/json")
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_the_api_takes_exactly_the_largest_batch(
    client: Client, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    pairs = [[pool[0].pk, pool[1].pk]] * search.MAX_PAIRS
    response = client.post(
        reverse("relsim_score_api"), json.dumps({"pairs": pairs}), content_type="application/json"
    )
    assert response.status_code == 200 and len(response.json()["scores"]) == search.MAX_PAIRS


def test_the_api_without_two_ids_is_a_json_400(client: Client) -> None:
    for params in ({}, {"a": "1"}, {"a": "1", "b": "x"}, {"a": "0", "b": "1"}):
        response = client.get(reverse("relsim_score_api"), params)
        assert response.status_code == 400
        assert "Give two pool image ids" in response.json()["error"]


def test_the_api_without_an_active_index_is_a_json_409(client: Client, pool: list[Image]) -> None:
    response = client.get(reverse("relsim_score_api"), {"a": pool[0].pk, "b": pool[1].pk})
    assert response.status_code == 409
    assert "no active relsim model" in response.json()["error"]


def test_the_api_names_the_ids_the_index_lacks(
    client: Client, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    response = client.post(
        reverse("relsim_score_api"),
        json.dumps({"pairs": [[pool[0].pk, 999_999], [888_888, pool[1].pk]]}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["missing"] == [888_888, 999_999]


def test_the_api_needs_a_signed_in_annotator(
    make_user: Any, pool: list[Image], relsim_index: EmbeddingIndex
) -> None:
    client = Client()
    url = reverse("relsim_score_api") + f"?a={pool[0].pk}&b={pool[1].pk}"
    assert client.get(url).status_code == 302
    client.force_login(make_user("nobody"))
    assert client.get(url).status_code == 403


# --- with a real (tiny) relsim model --------------------------------------------------------------

TINY_IMAGE_SIZE = 56


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ml.relsim import RelsimConfig, build_relsim_model, save_checkpoint
    from ml.vlm import build_tiny_vlm

    backbone = build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"), seed=0)
    model = build_relsim_model(
        RelsimConfig(backbone=str(backbone), image_size=TINY_IMAGE_SIZE), seed=1
    )
    return save_checkpoint(model, tmp_path_factory.mktemp("relsim") / "ckpt", global_step=1)


def _embed(checkpoint: Path, files: list[bytes]) -> np.ndarray:
    """What the checkpoint makes of images stored as the pool stores them."""
    from ml.relsim import load_checkpoint

    model = load_checkpoint(checkpoint)
    pictures = [
        PILImage.open(io.BytesIO(normalise_image(data).png)).convert("RGB") for data in files
    ]
    vectors: torch.Tensor = model.embed_images(pictures)
    return vectors.numpy()


@pytest.mark.slow
def test_an_upload_is_embedded_by_the_active_relsim_model(
    client: Client, pool: list[Image], png_factory: Any, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    new = png_factory(100)
    [vector] = _embed(tiny_checkpoint, [new])
    # The upload's own embedding sits at pool image 4's row; the others point elsewhere.
    rows = fan([0.0] * 6)
    rows[4] = vector
    model = active_relsim(tiny_checkpoint)
    make_index(tmp_path / "index", pool, rows, model=model)
    upload = SimpleUploadedFile("new.png", new, content_type="image/png")
    response = client.post(reverse("search"), {"upload": upload, "k": "2"})
    assert response.status_code == 200
    first, score = columns(response)["relsim"][0]
    assert first == pool[4].pk and score == pytest.approx(1.0, abs=2e-3)
    assert "Images like your upload" in response.content.decode()


def test_an_upload_is_not_embedded_in_the_web_process_by_a_model_over_the_limit(
    client: Client, pool: list[Image], png_factory: Any, tmp_path: Path, settings: Any
) -> None:
    """A 7B relsim model would take gigabytes in every web worker: above the limit the page
    says to import the image instead, and loads nothing."""
    folder = tmp_path / "big-relsim"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * (3 * 2**20))
    (folder / "notes.txt").write_bytes(b"\0" * (5 * 2**20))  # not weights: not counted
    model = active_relsim(folder)
    make_index(tmp_path / "index", pool, fan([0.0] * 6), model=model)
    settings.RELSIM_SEARCH_UPLOAD_MAX_MODEL_MB = 2
    upload = SimpleUploadedFile("new.png", png_factory(100), content_type="image/png")
    response = client.post(reverse("search"), {"upload": upload})
    assert response.status_code == 200
    note = notes(response)["relsim"]
    assert note.startswith(f"An upload cannot be searched with {model.name} here:")
    assert "its weights are 3 MB, over the 2 MB" in note and "Import the image" in note
    assert columns(response)["phash"]
    # At the limit it would load the folder, which holds no real checkpoint.
    settings.RELSIM_SEARCH_UPLOAD_MAX_MODEL_MB = 3
    upload = SimpleUploadedFile("new.png", png_factory(100), content_type="image/png")
    response = client.post(reverse("search"), {"upload": upload})
    assert notes(response)["relsim"].startswith("The relsim model could not be loaded:")


def _score_command(*args: str) -> list[list[str]]:
    out = StringIO()
    call_command("relsim_score", *args, stdout=out)
    return [line.split(",") for line in out.getvalue().splitlines()]


@pytest.mark.slow
def test_the_command_scores_two_image_files_with_a_checkpoint(
    tmp_path: Path, png_factory: Any, tiny_checkpoint: Path
) -> None:
    first, second = png_factory(1), png_factory(2)
    (tmp_path / "a.png").write_bytes(first)
    (tmp_path / "b.png").write_bytes(second)
    vectors = _embed(tiny_checkpoint, [first, second])
    lines = _score_command(
        str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--checkpoint", str(tiny_checkpoint)
    )
    assert lines[0] == ["a", "b", "score"]
    assert lines[1][:2] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert float(lines[1][2]) == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)


@pytest.mark.slow
def test_the_command_scores_a_csv_of_pairs_with_the_active_model(
    tmp_path: Path, png_factory: Any, tiny_checkpoint: Path
) -> None:
    for n in range(3):
        (tmp_path / f"{n}.png").write_bytes(png_factory(n))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b\n0.png,1.png\n1.png,2.png\n2.png,2.png\n")
    active_relsim(tiny_checkpoint)
    lines = _score_command("--pairs", str(pairs), "--batch-size", "2")  # two batches
    assert [line[:2] for line in lines] == [
        ["a", "b"],
        ["0.png", "1.png"],
        ["1.png", "2.png"],
        ["2.png", "2.png"],
    ]
    vectors = _embed(tiny_checkpoint, [png_factory(n) for n in range(3)])
    expected = [vectors[0] @ vectors[1], vectors[1] @ vectors[2], 1.0]
    assert [float(line[2]) for line in lines[1:]] == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_the_command_takes_a_model_by_id(
    tmp_path: Path, png_factory: Any, tiny_checkpoint: Path
) -> None:
    (tmp_path / "a.png").write_bytes(png_factory(1))
    model = TrainedModel.objects.create(
        kind=TrainedModel.Kind.RELSIM, name="older", folder=str(tiny_checkpoint)
    )
    a = str(tmp_path / "a.png")
    lines = _score_command(a, a, "--model", str(model.pk))
    assert float(lines[1][2]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{dir}/a.png"], "Give two image files, or --pairs FILE.csv."),
        (["{dir}/a.png", "{dir}/gone.png", "--checkpoint", "{dir}"], "No such image file"),
        (["{dir}/a.png", "{dir}/a.png"], "There is no active relsim model"),
        (["{dir}/a.png", "{dir}/a.png", "--model", "999"], "There is no relsim model #999"),
        (["{dir}/a.png", "{dir}/a.png", "--checkpoint", "{dir}/none"], "does not exist"),
        (["--pairs", "{dir}/headless.csv"], "needs a header line naming the columns a and b"),
        (["--pairs", "{dir}/empty.csv"], "holds no pairs"),
        (["--pairs", "{dir}/missing.csv"], "does not exist"),
        (["{dir}/a.png", "--pairs", "{dir}/empty.csv"], "not both"),
        (["{dir}/a.png", "{dir}/a.png", "--checkpoint", "{dir}"], "Cannot load the relsim model"),
    ],
)
def test_the_command_fails_clearly(
    tmp_path: Path, png_factory: Any, args: list[str], message: str
) -> None:
    (tmp_path / "a.png").write_bytes(png_factory(1))
    (tmp_path / "headless.csv").write_text("a.png,a.png\n")
    (tmp_path / "empty.csv").write_text("a,b\n")
    with pytest.raises(CommandError, match=message):
        call_command("relsim_score", *[arg.format(dir=tmp_path) for arg in args], stdout=StringIO())


@pytest.mark.slow
def test_the_command_names_an_unreadable_image(
    tmp_path: Path, png_factory: Any, tiny_checkpoint: Path
) -> None:
    (tmp_path / "a.png").write_bytes(png_factory(1))
    (tmp_path / "b.png").write_bytes(png_factory(2))
    (tmp_path / "text.png").write_text("just words")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b\na.png,b.png\nb.png,text.png\n")
    with pytest.raises(CommandError, match=r"text.png is not a usable image: "):
        call_command(
            "relsim_score",
            "--pairs",
            str(pairs),
            "--checkpoint",
            str(tiny_checkpoint),
            "--batch-size",
            "1",
            stdout=StringIO(),
        )
