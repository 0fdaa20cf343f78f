"""Benchmark runs end to end in the test process's executor: a small pool with test groups,
distractors and a fabricated baseline index whose vectors put group-mates nearest; the
stored top-k, the metrics, seeded draws, retries, the form's checks, the pages and the
command line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from captions.services import caption_create
from curation.intake import normalise_image
from curation.models import Image
from curation.services import group_create, image_store
from curation.similarity import PerceptualHashSimilarity
from evaluation import benchmark_selectors
from evaluation.benchmark_services import benchmark_start
from evaluation.models import BenchmarkQuery, BenchmarkRun, Retrieval
from ml.search import write_index
from training import search, services
from training.execution import execute_job
from training.models import EmbeddingIndex, Job, TrainedModel

pytestmark = pytest.mark.django_db

BASELINE = "tinyclip"
GROUPS = 4
GROUP_SIZE = 3
DISTRACTORS = 10
DIM = 64


@dataclass
class Pool:
    groups: list[list[Image]]
    distractors: list[Image]
    train: list[Image]
    captioned: Image
    index: EmbeddingIndex

    @property
    def test_images(self) -> list[Image]:
        return [image for group in self.groups for image in group]


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    # Ids come back after a rolled-back test on SQLite, and the caches are keyed by id.
    search.clear_index_caches()
    PerceptualHashSimilarity._cache = None
    yield
    search.clear_index_caches()
    PerceptualHashSimilarity._cache = None


def _stored(png_factory: Any, seed: int) -> Image:
    return image_store(normalised=normalise_image(png_factory(seed))).image


def baseline_vectors(pool_groups: list[list[Image]], others: list[Image]) -> dict[int, Any]:
    """Each test image leans on its group's own axis with a little of an axis of its own;
    every other image sits on an axis of its own. Group-mates have cosine ~0.99, everything
    else 0."""
    vectors: dict[int, Any] = {}
    spare = GROUPS
    for g, group in enumerate(pool_groups):
        for image in group:
            row = np.zeros(DIM, dtype=np.float32)
            row[g] = 1.0
            row[spare] = 0.1
            spare += 1
            vectors[image.pk] = row
    for image in others:
        row = np.zeros(DIM, dtype=np.float32)
        row[spare] = 1.0
        spare += 1
        vectors[image.pk] = row
    return vectors


def make_index(
    folder: Path,
    vectors: dict[int, Any],
    name: str = BASELINE,
    model: TrainedModel | None = None,
) -> EmbeddingIndex:
    ids = sorted(vectors)
    matrix = np.stack([vectors[pk] for pk in ids])
    write_index(folder, [str(pk) for pk in ids], matrix, {"test": True})
    return EmbeddingIndex.objects.create(
        model=model,
        baseline="" if model is not None else name,
        folder=str(folder),
        count=len(ids),
        dim=DIM,
    )


@pytest.fixture
def pool(png_factory: Any, tmp_path: Path) -> Pool:
    seed = iter(range(500))
    groups = []
    for g in range(GROUPS):
        images = [_stored(png_factory, next(seed)) for _ in range(GROUP_SIZE)]
        group_create(title=f"test group {g}", images=images, split="test")
        groups.append(images)
    train = [_stored(png_factory, next(seed)) for _ in range(2)]
    group_create(title="train group", images=train, split="train")
    captioned = _stored(png_factory, next(seed))
    caption_create(text="A {Object} inside a larger {Object}.", image=captioned)
    distractors = [_stored(png_factory, next(seed)) for _ in range(DISTRACTORS)]
    vectors = baseline_vectors(groups, [*train, captioned, *distractors])
    # The baseline's index lacks the last distractor: it must go from every method.
    del vectors[distractors[-1].pk]
    index = make_index(tmp_path / "baseline-index", vectors)
    return Pool(groups, distractors, train, captioned, index)


def methods(*keys: str) -> list[benchmark_selectors.Method]:
    known = {method.key: method for method in benchmark_selectors.available_methods()}
    return [known[key] for key in keys]


def start_run(
    *,
    keys: tuple[str, ...] = ("phash", BASELINE),
    n_test: int = 100,
    n_distractors: int = 100,
    n_queries: int = 12,
    k: int = 5,
    seed: int = 0,
    name: str = "bench",
) -> BenchmarkRun:
    return benchmark_start(
        name=name,
        methods=methods(*keys),
        n_test=n_test,
        n_distractors=n_distractors,
        n_queries=n_queries,
        k=k,
        seed=seed,
        user=None,
        enqueue=False,
    )


def run_job(run: BenchmarkRun) -> Job:
    assert run.job is not None
    execute_job(run.job.pk, worker="test")
    run.refresh_from_db()
    job = Job.objects.get(pk=run.job.pk)
    return job


def finished_run(**options: Any) -> BenchmarkRun:
    run = start_run(**options)
    job = run_job(run)
    assert job.status == Job.Status.SUCCEEDED, job.error
    return run


def retrievals(run: BenchmarkRun) -> dict[tuple[int, str], tuple[list[int], list[float]]]:
    return {
        (query_image, method): (hits, scores)
        for query_image, method, hits, scores in Retrieval.objects.filter(
            query__run=run
        ).values_list("query__image_id", "method", "hits", "scores")
    }


# --- the database -------------------------------------------------------------------------


def test_test_images_are_test_group_members_and_distractors_have_no_group_or_caption(
    pool: Pool,
) -> None:
    assert benchmark_selectors.test_image_ids() == sorted(i.pk for i in pool.test_images)
    assert benchmark_selectors.distractor_ids() == sorted(i.pk for i in pool.distractors)


def test_phash_and_each_baselines_newest_index_are_offered_as_methods(
    pool: Pool, tmp_path: Path
) -> None:
    newer = make_index(tmp_path / "newer", {pool.captioned.pk: np.ones(DIM)})
    offered = {m.key: m for m in benchmark_selectors.available_methods()}
    assert set(offered) == {"phash", BASELINE}
    assert offered[BASELINE].index_id == newer.pk
    assert offered["phash"].index_id is None


def test_a_relsim_models_index_is_a_method_keyed_by_its_model(pool: Pool, tmp_path: Path) -> None:
    model = TrainedModel.objects.create(
        kind=TrainedModel.Kind.RELSIM, name="tiny relsim", folder=str(tmp_path / "ckpt")
    )
    vectors = baseline_vectors(pool.groups, [*pool.train, pool.captioned, *pool.distractors])
    index = make_index(tmp_path / "relsim-index", vectors, model=model)
    offered = benchmark_selectors.available_methods()
    key = f"relsim:{model.pk}"
    assert [m.key for m in offered] == [key, BASELINE, "phash"]
    assert offered[0].label == f"tiny relsim #{model.pk}"
    run = finished_run(keys=(key, "phash"), n_queries=12, k=3)
    assert run.methods[key] == {"label": offered[0].label, "index": index.pk, "kind": "relsim"}
    assert run.metrics["methods"][key]["precision_at_1"] == 1.0
    # Its index holds every image: nothing is left out of the database.
    assert run.metrics["database"]["dropped"] == 0 and run.metrics["database"]["total"] == 22


# --- the job ------------------------------------------------------------------------------


def test_a_run_stores_each_querys_top_k_from_the_database_without_the_query_itself(
    pool: Pool,
) -> None:
    run = finished_run(n_queries=12, k=5)
    assert run.finished_at is not None
    lacking = pool.distractors[-1].pk
    expected_database = sorted(
        [i.pk for i in pool.test_images] + [i.pk for i in pool.distractors if i.pk != lacking]
    )
    assert run.database == expected_database
    database = run.metrics["database"]
    assert (database["test"], database["distractors"], database["total"]) == (12, 9, 21)
    assert database["dropped"] == 1 and database["missing_by_method"] == {"phash": 0, BASELINE: 1}
    assert "same images" in database["dropped_why"]

    queries = list(BenchmarkQuery.objects.filter(run=run))
    assert [q.position for q in queries] == list(range(12))
    assert {q.image_id for q in queries} == {i.pk for i in pool.test_images}
    stored = retrievals(run)
    assert len(stored) == 12 * 2 == Retrieval.objects.filter(query__run=run).count()
    for (query_image, _method), (hits, scores) in stored.items():
        assert len(hits) == len(scores) == 5
        assert query_image not in hits
        assert len(set(hits)) == 5 and set(hits) <= set(expected_database)
        assert scores == sorted(scores, reverse=True)


def test_the_baseline_that_puts_group_mates_nearest_beats_the_perceptual_hash(
    pool: Pool,
) -> None:
    run = finished_run(n_queries=12, k=5)
    figures = run.metrics["methods"]
    assert figures[BASELINE]["precision_at_1"] == 1.0
    assert figures[BASELINE]["map"] == pytest.approx(1.0)
    assert figures[BASELINE]["recall_at_k"] == 1.0
    assert figures["phash"]["precision_at_1"] < figures[BASELINE]["precision_at_1"]
    assert figures[BASELINE]["queries_scored"] == 12
    overlap = run.metrics["overlap"]
    assert overlap["phash"]["phash"] == overlap[BASELINE][BASELINE] == 1.0
    assert 0.0 <= overlap["phash"][BASELINE] < 1.0
    # Every baseline hit ranks both group-mates first.
    mates = {i.pk: {j.pk for j in group} - {i.pk} for group in pool.groups for i in group}
    for (query_image, method), (hits, _scores) in retrievals(run).items():
        if method == BASELINE:
            assert set(hits[:2]) == mates[query_image]


def test_the_same_seed_draws_the_same_run_and_another_seed_another(pool: Pool) -> None:
    options = {"n_test": 8, "n_distractors": 5, "n_queries": 6, "k": 3}
    first = finished_run(seed=7, **options)
    again = finished_run(seed=7, **options)
    other = finished_run(seed=8, **options)

    def queries(run: BenchmarkRun) -> list[int]:
        return list(run.queries.order_by("position").values_list("image_id", flat=True))

    assert first.database == again.database and queries(first) == queries(again)
    assert retrievals(first) == retrievals(again)
    assert (other.database, queries(other)) != (first.database, queries(first))
    assert len(first.database) == 8 + 5 and len(queries(first)) == 6


def test_a_retried_run_replaces_its_rows_instead_of_adding_to_them(pool: Pool) -> None:
    run = finished_run(n_queries=4, k=3)
    assert run.job is not None
    # As if the attempt had died after storing its rows.
    BenchmarkRun.objects.filter(pk=run.pk).update(finished_at=None)
    Job.objects.filter(pk=run.job.pk).update(status=Job.Status.FAILED)
    services.job_retry(job=Job.objects.get(pk=run.job.pk))
    job = run_job(run)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert BenchmarkQuery.objects.filter(run=run).count() == 4
    assert Retrieval.objects.filter(query__run=run).count() == 4 * 2


def test_a_finished_run_is_never_drawn_again(pool: Pool) -> None:
    run = finished_run(n_queries=4, k=3)
    before = sorted(BenchmarkQuery.objects.filter(run=run).values_list("pk", flat=True))
    assert run.job is not None
    again = Job.objects.create(kind=Job.Kind.BENCHMARK, params={"benchmark": run.pk})
    execute_job(again.pk, worker="test")
    again.refresh_from_db()
    assert again.status == Job.Status.FAILED and "already complete" in again.error
    assert sorted(BenchmarkQuery.objects.filter(run=run).values_list("pk", flat=True)) == before


def test_an_index_that_holds_none_of_the_database_fails_the_run(pool: Pool, tmp_path: Path) -> None:
    make_index(tmp_path / "elsewhere", {pool.captioned.pk: np.ones(DIM)}, name="elsewhere")
    run = start_run(keys=("phash", "elsewhere"), n_queries=4, k=3)
    job = run_job(run)
    assert job.status == Job.Status.FAILED
    assert "holds none of the database's images" in job.error
    assert run.finished_at is None


def test_a_cancel_stops_the_run_between_steps(pool: Pool) -> None:
    run = start_run(n_queries=4, k=3)
    assert run.job is not None
    Job.objects.filter(pk=run.job.pk).update(cancel_requested=True)
    job = run_job(run)
    assert job.status == Job.Status.CANCELLED
    assert run.finished_at is None and not Retrieval.objects.filter(query__run=run).exists()


# --- the form and the pages ---------------------------------------------------------------


def _post(client: Client, **fields: Any) -> Any:
    data = {
        "name": "from the form",
        "methods": ["phash", BASELINE],
        "n_test": 100,
        "n_distractors": 100,
        "n_queries": 5,
        "k": 5,
        "seed": 0,
        **fields,
    }
    return client.post(reverse("benchmark_new"), data)


def test_the_form_offers_the_papers_sizes_capped_by_the_pool(
    pool: Pool, admin_client: Client
) -> None:
    page = admin_client.get(reverse("benchmark_new"))
    form = page.context["form"]
    assert form["n_test"].initial == 12 and form["n_distractors"].initial == DISTRACTORS
    assert form["n_queries"].initial == 12 and form["k"].initial == 10
    text = page.content.decode()
    assert "members of groups in the test split" in text and "no group and have no caption" in text


def test_the_form_refuses_bad_sizes_with_clear_messages(pool: Pool, admin_client: Client) -> None:
    too_many = _post(admin_client, n_queries=13).content.decode()
    assert "Only 12 test image(s) go into the database" in too_many
    capped = _post(admin_client, n_test=3, n_queries=4).content.decode()
    assert "too few for 4 queries" in capped
    assert "Choose at least one method." in _post(admin_client, methods=[]).content.decode()
    small = _post(admin_client, n_test=2, n_distractors=0, k=2).content.decode()
    assert "choose a smaller k" in small
    assert not BenchmarkRun.objects.exists()


def test_without_test_images_the_form_says_so(png_factory: Any, admin_client: Client) -> None:
    _stored(png_factory, 1)
    page = _post(admin_client, methods=["phash"], n_queries=1).content.decode()
    assert "There are no test images" in page
    assert not BenchmarkRun.objects.exists()


def test_a_valid_form_records_the_run_and_its_job(pool: Pool, admin_client: Client) -> None:
    response = _post(admin_client)
    run = BenchmarkRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "benchmark_detail", args=[run.pk]
    )
    assert set(run.methods) == {"phash", BASELINE}
    assert run.methods[BASELINE]["index"] == pool.index.pk
    assert run.params == {"n_test": 100, "n_distractors": 100, "n_queries": 5, "k": 5, "seed": 0}
    assert run.job is not None and run.job.kind == Job.Kind.BENCHMARK
    assert run.job.queue == Job.Queue.CPU and run.job.params["benchmark"] == run.pk


def test_the_run_page_shows_metrics_overlap_samples_and_links(
    pool: Pool, admin_client: Client
) -> None:
    run = finished_run(n_queries=12, k=5)
    assert run.job is not None
    page = admin_client.get(reverse("benchmark_detail", args=[run.pk])).content.decode()
    assert 'id="overlap-table"' in page and 'id="samples"' in page
    assert "1.000" in page  # the baseline's P@1
    assert reverse("job_detail", args=[run.job.pk]) in page
    assert reverse("judge_new", args=[run.pk]) in page
    assert f"?benchmark={run.pk}" in page
    thumb = Image.objects.get(pk=run.queries.get(position=0).image_id).thumbnail.url
    assert thumb in page
    assert "21</strong> images: 12 test images + 9 distractors" in page
    listing = admin_client.get(reverse("benchmark_list")).content.decode()
    assert reverse("benchmark_detail", args=[run.pk]) in listing


def test_a_running_runs_status_polls_and_the_page_reloads_once_it_ends(
    pool: Pool, admin_client: Client
) -> None:
    run = start_run(n_queries=4, k=3)
    page = admin_client.get(reverse("benchmark_detail", args=[run.pk])).content.decode()
    assert 'hx-trigger="every 3s"' in page
    run_job(run)
    polled = admin_client.get(reverse("benchmark_detail", args=[run.pk]), HTTP_HX_REQUEST="true")
    assert polled.headers.get("HX-Refresh") == "true"


def test_annotators_may_not_see_or_start_benchmark_runs(pool: Pool, annotator: Any) -> None:
    run = finished_run(n_queries=4, k=3)
    client = Client()
    client.force_login(annotator)
    assert client.get(reverse("benchmark_list")).status_code == 403
    assert client.get(reverse("benchmark_detail", args=[run.pk])).status_code == 403
    assert client.get(reverse("benchmark_new")).status_code == 403
    assert _post(client).status_code == 403
    assert BenchmarkRun.objects.count() == 1


# --- the command line ---------------------------------------------------------------------


def test_the_command_runs_a_benchmark_here_and_lists_the_methods(pool: Pool) -> None:
    out = StringIO()
    call_command("evaluate", "methods", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{BASELINE}\t") and lines[-1].startswith("phash\t")
    out = StringIO()
    call_command(
        "evaluate",
        "benchmark",
        "--name",
        "cli",
        "--methods",
        f"phash,{BASELINE}",
        "--n-queries",
        "4",
        "--k",
        "3",
        "--here",
        stdout=out,
        stderr=StringIO(),
    )
    run = BenchmarkRun.objects.get()
    assert run.name == "cli" and run.is_complete and run.queries.count() == 4
    assert run.job is not None and f"job #{run.job.pk}: succeeded" in out.getvalue()


def test_the_command_refuses_unknown_methods_and_bad_sizes(pool: Pool) -> None:
    with pytest.raises(CommandError, match="Unknown methods: clip"):
        call_command("evaluate", "benchmark", "--name", "x", "--methods", "clip", "--here")
    with pytest.raises(CommandError, match="--n-queries: Only 12 test image"):
        call_command("evaluate", "benchmark", "--name", "x", "--n-queries", "50", "--here")
    assert not BenchmarkRun.objects.exists()


def test_a_finished_at_is_set_only_by_the_job(pool: Pool) -> None:
    run = start_run(n_queries=4, k=3)
    assert run.finished_at is None and not run.is_complete
    before = timezone.now()
    run_job(run)
    assert run.finished_at is not None and run.finished_at >= before


@pytest.mark.django_db(transaction=True)
def test_a_run_the_broker_never_took_says_so(
    pool: Pool, admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(job_id: int, *, queue: str) -> None:
        raise ConnectionError("connection refused")

    monkeypatch.setattr("training.queueing.send_job", refuse)
    page = _post(admin_client, n_queries=4).content.decode()
    assert page == ""  # a redirect to the run's page
    run = BenchmarkRun.objects.get()
    assert run.job is not None and run.job.status == Job.Status.FAILED
    followed = admin_client.get(reverse("benchmark_detail", args=[run.pk])).content.decode()
    assert "the job queue cannot be reached" in followed
    assert "could not be reached" in followed  # the job's own error, on the status card


def test_images_with_their_own_test_caption_are_test_images_and_share_truth_by_text(
    png_factory: Any,
) -> None:
    """The released test set is single-image captions: those images are test images, and
    images whose approved captions read the same are each other's ground truth."""
    from captions.models import Caption
    from captions.services import caption_create
    from curation.intake import normalise_image
    from curation.services import image_store
    from evaluation.benchmark_selectors import group_mates, test_image_ids

    images = [image_store(normalised=normalise_image(png_factory(500 + n))).image for n in range(5)]
    texts = ["A {Object} inside a {Object}.", "A  {object} inside a {Object}.", "Two {Object}s."]
    for image, text in zip(images, texts, strict=False):
        caption_create(text=text, image=image, split="test", status=Caption.Status.APPROVED)
    caption_create(text="Two {Object}s.", image=images[3], split="train", status="approved")
    caption_create(text="Two {Object}s.", image=images[4], split="test", status="draft")

    tests = test_image_ids()
    assert set(images[:3]) <= {image for image in images if image.pk in tests}
    assert images[3].pk not in tests and images[4].pk not in tests
    mates = group_mates([image.pk for image in images[:3]])
    assert mates[images[0].pk] == {images[1].pk}
    assert mates[images[1].pk] == {images[0].pk}
    assert mates[images[2].pk] == set()
