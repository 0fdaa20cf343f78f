"""The jobs list, a run's metrics as JSON, two runs side by side, and what the job page
adds while a job runs: time left, place in the queue, outputs and the log tail."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone

from config.urls import urlpatterns as project_urlpatterns
from training import job_views, services
from training.models import EmbeddingIndex, Job, JobMetric, TrainedModel

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def _models_stub(request: HttpRequest) -> HttpResponse:
    return HttpResponse("models")


# The project's URLs plus a models list, for the tests that link outputs to it (the real
# page is built elsewhere; until it exists, outputs are shown without a link).
urlpatterns = [*project_urlpatterns, path("models/", _models_stub, name="model_list")]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # admin_client and the role users get passwords; the real hasher is deliberately slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _job(**fields: Any) -> Job:
    return Job.objects.create(**{"kind": Job.Kind.EXPORT_DATASET, **fields})


def _rows(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-job="(\d+)"', page)]


# --- The jobs list --------------------------------------------------------------------------


def test_the_jobs_list_shows_every_job_newest_first_with_a_link_to_each(
    admin_client: Client, admin_user: Any
) -> None:
    old = _job(status=Job.Status.SUCCEEDED, progress=1.0, created_by=admin_user)
    new = _job(
        kind=Job.Kind.TRAIN_RELSIM,
        queue=Job.Queue.GPU,
        status=Job.Status.RUNNING,
        progress=0.4,
        progress_message="step 40 of 100",
    )
    response = admin_client.get(reverse("job_list"))
    assert response.status_code == 200
    page = response.content.decode()
    assert _rows(page) == [new.pk, old.pk]
    assert f'href="{reverse("job_detail", args=[new.pk])}"' in page
    assert "train relsim" in page and "step 40 of 100" in page
    assert '<progress max="100" value="40"' in page
    assert f"<td>{admin_user.username}</td>" in page and "command line" in page
    assert f'name="job" value="{new.pk}"' in page  # a box to pick it for comparing


def test_the_navigation_links_to_the_jobs_list_for_those_who_may_see_it(
    admin_client: Client, annotator: Any
) -> None:
    assert f'href="{reverse("job_list")}"' in admin_client.get("/").content.decode()
    client = Client()
    client.force_login(annotator)
    assert f'href="{reverse("job_list")}"' not in client.get("/").content.decode()


def test_the_jobs_list_filters_by_kind_status_and_user(
    admin_client: Client, admin_user: Any, annotator: Any
) -> None:
    export = _job(status=Job.Status.SUCCEEDED, created_by=admin_user)
    train = _job(kind=Job.Kind.TRAIN_RELSIM, status=Job.Status.FAILED, created_by=admin_user)
    running = _job(kind=Job.Kind.TRAIN_RELSIM, status=Job.Status.RUNNING, created_by=annotator)
    pending = _job(kind=Job.Kind.EMBED)
    url = reverse("job_list")
    assert _rows(admin_client.get(url, {"kind": "train_relsim"}).content.decode()) == [
        running.pk,
        train.pk,
    ]
    assert _rows(admin_client.get(url, {"status": "succeeded"}).content.decode()) == [export.pk]
    assert _rows(admin_client.get(url, {"status": "active"}).content.decode()) == [
        pending.pk,
        running.pk,
    ]
    by_user = admin_client.get(url, {"user": admin_user.username}).content.decode()
    assert _rows(by_user) == [train.pk, export.pk]
    both = {"kind": "train_relsim", "user": admin_user.username}
    assert _rows(admin_client.get(url, both).content.decode()) == [train.pk]
    none = admin_client.get(url, {"kind": "evaluate"}).content.decode()
    assert _rows(none) == [] and "No job matches these filters." in none


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "bake_bread"}, "There is no job kind “bake_bread”."),
        ({"status": "sleeping"}, "There is no job status “sleeping”."),
        ({"user": "nobody-here"}, "There is no user “nobody-here”."),
        ({"after": "abc"}, "Enter a whole number."),
        ({"after": "999999"}, "This page link is no longer valid"),
        ({"before": "-4"}, "greater than or equal to 1"),
    ],
)
def test_unknown_filter_values_get_a_clear_message_not_a_server_error(
    admin_client: Client, params: dict[str, str], message: str
) -> None:
    _job()
    response = admin_client.get(reverse("job_list"), params)
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="filter-errors"' in page and message in page
    assert _rows(page) == []


def test_the_jobs_list_pages_through_every_job_with_a_bounded_number_of_queries(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    Job.objects.bulk_create(Job(kind=Job.Kind.EXPORT_DATASET) for _ in range(120))
    # Equal creation times too: the id breaks the tie, so no job is skipped or shown twice.
    Job.objects.update(created_at=timezone.now())
    newest_first = list(Job.objects.order_by("-created_at", "-id").values_list("id", flat=True))
    seen: list[int] = []
    url = reverse("job_list")
    params: dict[str, str] = {}
    for _ in range(5):
        with django_assert_max_num_queries(8):
            page = admin_client.get(url, params).content.decode()
        rows = _rows(page)
        assert len(rows) <= job_views.PAGE_SIZE
        seen += rows
        after = re.search(r'after=(\d+)" rel="next"', page)
        if after is None:
            break
        params = {"after": after.group(1)}
    assert seen == newest_first
    # And back: the previous page of the last one is the one before it.
    before = re.search(r'before=(\d+)" rel="prev"', page)
    assert before is not None
    back = _rows(admin_client.get(url, {"before": before.group(1)}).content.decode())
    assert back == newest_first[job_views.PAGE_SIZE : 2 * job_views.PAGE_SIZE]


# --- The metrics endpoint -------------------------------------------------------------------


def _metrics(job: Job, steps: range, **extra: Any) -> None:
    JobMetric.objects.bulk_create(
        JobMetric(
            job=job,
            step=step,
            values={"step": step, "loss": 2.0 / step, "lr": 1e-4, "epoch": step / 10, **extra},
        )
        for step in steps
    )


def test_the_metrics_endpoint_gives_each_numeric_series_after_a_step(
    admin_client: Client,
) -> None:
    job = _job(kind=Job.Kind.TRAIN_RELSIM, status=Job.Status.RUNNING)
    _metrics(job, range(1, 6))
    url = reverse("job_metrics", args=[job.pk])
    everything = admin_client.get(url).json()
    assert everything["job"] == job.pk and everything["status"] == "running"
    assert everything["steps"] == [1, 2, 3, 4, 5]
    assert list(everything["series"]) == ["loss", "lr", "epoch"]
    assert everything["series"]["loss"] == [2.0, 1.0, 2.0 / 3, 0.5, 0.4]
    assert everything["last_step"] == 5 and everything["more"] is False
    assert everything["finished"] is False
    newer = admin_client.get(url, {"after": "3"})
    assert newer["Cache-Control"] == "no-store"
    assert newer.json()["steps"] == [4, 5] and newer.json()["series"]["lr"] == [1e-4, 1e-4]
    nothing_new = admin_client.get(url, {"after": "5"}).json()
    assert nothing_new["steps"] == [] and nothing_new["series"] == {}
    assert nothing_new["last_step"] == 5


def test_values_a_chart_cannot_draw_are_sent_as_gaps(admin_client: Client) -> None:
    job = _job(kind=Job.Kind.TRAIN_RELSIM)
    JobMetric.objects.create(job=job, step=1, values={"loss": "NaN", "note": "warm-up"})
    JobMetric.objects.create(job=job, step=2, values={"loss": 1.5, "flag": True, "lr": 3})
    answer = admin_client.get(reverse("job_metrics", args=[job.pk])).json()
    assert answer["series"] == {"loss": [None, 1.5], "lr": [None, 3]}
    # The database refuses NaN in JSON; a row that came through with one still draws a gap.
    rows = [(1, {"loss": float("nan")}), (2, {"loss": float("inf")}), (3, {"loss": 0.5})]
    assert job_views.metric_series(rows) == {"loss": [None, None, 0.5]}


def test_a_long_run_is_sent_in_bounded_chunks(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_views, "MAX_POINTS", 4)
    job = _job(kind=Job.Kind.TRAIN_RELSIM, status=Job.Status.SUCCEEDED)
    _metrics(job, range(1, 11))
    url = reverse("job_metrics", args=[job.pk])
    steps: list[int] = []
    after: int | None = None
    for _ in range(5):
        answer = admin_client.get(url, {} if after is None else {"after": after}).json()
        assert len(answer["steps"]) <= 4
        steps += answer["steps"]
        after = answer["last_step"]
        if not answer["more"]:
            break
    assert steps == list(range(1, 11)) and answer["finished"] is True


@pytest.mark.parametrize("after", ["abc", "-1", "1.5", "", " 3", "99999999999"])
def test_a_bad_after_is_a_400_with_a_json_error(admin_client: Client, after: str) -> None:
    job = _job(kind=Job.Kind.TRAIN_RELSIM)
    response = admin_client.get(f"{reverse('job_metrics', args=[job.pk])}?after={after}")
    if after == "":
        assert response.status_code == 200  # an empty value means "from the start"
        return
    assert response.status_code == 400
    assert "after must be a step number" in response.json()["error"]


def test_the_metrics_of_a_job_that_is_not_there_are_a_json_404(admin_client: Client) -> None:
    response = admin_client.get(reverse("job_metrics", args=[424242]))
    assert response.status_code == 404 and response.json() == {"error": "There is no job #424242."}


# --- Two runs side by side ------------------------------------------------------------------


def test_two_runs_are_compared_side_by_side_with_their_differences_marked(
    admin_client: Client,
) -> None:
    a = _job(
        kind=Job.Kind.TRAIN_RELSIM,
        status=Job.Status.SUCCEEDED,
        params={"name": "base", "config": {"lr": 1e-4, "epochs": 3}},
        artifacts={"model_id": 1},
    )
    b = _job(
        kind=Job.Kind.TRAIN_RELSIM,
        status=Job.Status.SUCCEEDED,
        params={"name": "base", "config": {"lr": 5e-5, "epochs": 3, "warmup": 10}},
        artifacts={"model_id": 2},
    )
    _metrics(a, range(1, 4))
    response = admin_client.get(reverse("job_compare"), {"a": a.pk, "b": b.pk})
    assert response.status_code == 200
    page = response.content.decode()
    assert re.search(r'<tr class="differs" data-key="config.lr">', page)
    assert re.search(r'<tr data-key="config.epochs">', page)
    assert re.search(r'<tr class="differs" data-key="config.warmup">', page)
    assert re.search(r'<tr data-key="name">', page)
    assert re.search(r'<tr class="differs" data-key="model_id">', page)
    assert re.search(r'<tr class="differs" data-key="loss">', page)  # only a logged any
    # Both runs' metrics feed the one chart.
    for job in (a, b):
        assert (
            f'data-run data-label="#{job.pk}" href="{reverse("job_metrics", args=[job.pk])}"'
            in (page)
        )
    assert 'data-default="loss"' in page and "js/job_curves.js" in page


def test_two_runs_checked_on_the_jobs_list_open_the_comparison(admin_client: Client) -> None:
    a, b = _job(), _job()
    response = admin_client.get(reverse("job_compare"), {"job": [b.pk, a.pk]})
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('job_compare')}?a={a.pk}&b={b.pk}"
    one = admin_client.get(reverse("job_compare"), {"job": [a.pk]})
    assert one.status_code == 400
    assert "Check exactly two jobs to compare (1 checked)." in one.content.decode()
    odd = admin_client.get(reverse("job_compare"), {"job": [a.pk, "²"]})
    assert odd.status_code == 400
    assert "Jobs are named by their numbers" in odd.content.decode()


def test_the_comparison_without_jobs_offers_a_form_to_pick_them(admin_client: Client) -> None:
    response = admin_client.get(reverse("job_compare"))
    assert response.status_code == 200
    assert (
        'name="a"' in response.content.decode() and "data-curves" not in response.content.decode()
    )


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"a": "x", "b": "1"}, 400, "First job: Enter a whole number."),
        ({"a": "1"}, 400, "Second job: This field is required."),
        ({"a": "SAME", "b": "SAME"}, 400, "Choose two different jobs."),
        ({"a": "SAME", "b": "987654"}, 404, "There is no job #987654."),
    ],
)
def test_a_bad_comparison_says_what_is_wrong(
    admin_client: Client, params: dict[str, str], status: int, message: str
) -> None:
    job = _job()
    params = {key: str(job.pk) if value == "SAME" else value for key, value in params.items()}
    response = admin_client.get(reverse("job_compare"), params)
    assert response.status_code == status
    assert message in response.content.decode()


# --- The job page ---------------------------------------------------------------------------


def test_a_pending_job_says_how_many_jobs_of_its_queue_are_ahead(admin_client: Client) -> None:
    services.worker_beat(name="cpu@host", queues=["cpu"], pid=1)
    _job(status=Job.Status.RUNNING)
    _job(status=Job.Status.PENDING)
    _job(status=Job.Status.SUCCEEDED)  # done: not ahead
    _job(status=Job.Status.PENDING, kind=Job.Kind.EMBED, queue=Job.Queue.GPU)  # another queue
    job = _job(status=Job.Status.PENDING)
    _job(status=Job.Status.PENDING)  # created after: behind it
    assert job_views.jobs_ahead(job) == {"total": 2, "running": 1, "pending": 1}
    page = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert "Waiting behind 2 jobs on the cpu queue (1 running, 1 pending)." in page
    assert 'id="job-warning"' not in page
    Job.objects.filter(pk__lt=job.pk).update(status=Job.Status.SUCCEEDED)
    page = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert "Next in line on the cpu queue." in page


def test_a_pending_job_with_no_worker_for_its_queue_says_so_instead_of_its_place(
    admin_client: Client,
) -> None:
    _job(status=Job.Status.PENDING)
    job = _job(status=Job.Status.PENDING)
    page = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert 'id="job-warning"' in page and "Waiting for a worker on the cpu queue." in page
    assert "Waiting behind" not in page


def test_a_running_job_shows_the_time_left_at_its_pace(admin_client: Client) -> None:
    now = timezone.now()
    job = _job(status=Job.Status.RUNNING, progress=0.25, started_at=now - timedelta(seconds=100))
    assert (
        job_views.job_eta(job, now) == "Running for 1 min 40 s; about 5 min 0 s left at this pace."
    )
    page = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert re.search(r'data-testid="job-eta">Running for 1 min 4\d s; about 5 min \d+ s left', page)
    job.progress = 0.001
    assert job_views.job_eta(job, now).endswith("no estimate of the time left yet.")
    job.status = Job.Status.SUCCEEDED
    assert job_views.job_eta(job, now) == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59.6, "1 min 0 s"), (3_725, "1 h 2 min"), (90_000, "1 d 1 h")],
)
def test_durations_read_as_a_person_says_them(seconds: float, text: str) -> None:
    assert job_views.duration_text(seconds) == text


def test_the_log_tail_is_shown_in_a_scrollable_block_that_the_polling_updates(
    admin_client: Client,
) -> None:
    job = _job(status=Job.Status.RUNNING, log_tail="epoch 1 <done>\nepoch 2")
    url = reverse("job_detail", args=[job.pk])
    page = admin_client.get(url).content.decode()
    assert '<pre class="log-tail" id="job-log"' in page
    assert "epoch 1 &lt;done&gt;\nepoch 2</pre>" in page
    Job.objects.filter(pk=job.pk).update(log_tail="epoch 1 <done>\nepoch 2\nepoch 3")
    fragment = admin_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="job-status"' in fragment and "epoch 3</pre>" in fragment


@pytest.mark.urls(__name__)
def test_the_page_links_to_the_model_and_index_the_job_made(admin_client: Client) -> None:
    train = _job(kind=Job.Kind.TRAIN_RELSIM, status=Job.Status.SUCCEEDED)
    model = TrainedModel.objects.create(
        kind=TrainedModel.Kind.RELSIM, name="tiny", folder="/x", job=train, is_active=True
    )
    Job.objects.filter(pk=train.pk).update(artifacts={"model_id": model.pk})
    embed = _job(kind=Job.Kind.EMBED, status=Job.Status.SUCCEEDED)
    index = EmbeddingIndex.objects.create(model=model, folder="/i", count=12, dim=8, job=embed)
    Job.objects.filter(pk=embed.pk).update(artifacts={"model_id": model.pk, "index_id": index.pk})

    page = admin_client.get(reverse("job_detail", args=[train.pk])).content.decode()
    link = job_views.model_url(model.pk)
    assert link
    assert f'<a href="{link}">relsim model #{model.pk} “tiny” (active)</a>' in page
    assert "Made: " in page
    page = admin_client.get(reverse("job_detail", args=[embed.pk])).content.decode()
    assert f'<a href="{job_views.index_url(index.pk)}">embedding index #{index.pk}: 12' in page
    assert "Used: <a" in page  # the model it embedded with


def test_outputs_are_named_without_a_link_while_no_models_page_exists(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_page(*args: Any, **kwargs: Any) -> str:
        raise NoReverseMatch("no such page")

    monkeypatch.setattr(job_views, "reverse", no_page)
    job = _job(kind=Job.Kind.TRAIN_RELSIM, status=Job.Status.SUCCEEDED)
    model = TrainedModel.objects.create(
        kind=TrainedModel.Kind.RELSIM, name="tiny", folder="/x", job=job
    )
    Job.objects.filter(pk=job.pk).update(artifacts={"model_id": model.pk + 1000})
    page = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f"Made: relsim model #{model.pk} “tiny”</li>" in page
    assert f"model #{model.pk + 1000} (since deleted)" in page


def test_only_jobs_with_curves_get_the_chart(admin_client: Client) -> None:
    train = _job(kind=Job.Kind.TRAIN_RELSIM, status=Job.Status.PENDING)
    export = _job()
    page = admin_client.get(reverse("job_detail", args=[train.pk])).content.decode()
    assert 'id="job-curves"' in page and "vendor/uPlot.iife.min.js" in page
    assert f'<a href="{reverse("job_list")}">← Jobs</a>' in page
    assert f'href="{reverse("job_metrics", args=[train.pk])}"' in page
    page = admin_client.get(reverse("job_detail", args=[export.pk])).content.decode()
    assert 'id="job-curves"' not in page and "uPlot" not in page


def test_the_vendored_chart_library_matches_its_recorded_checksums() -> None:
    vendor = ROOT / "static" / "vendor"
    readme = (vendor / "README.md").read_text()
    recorded = dict(re.findall(r"^- (uPlot\.\S+) sha256 ([0-9a-f]{64})$", readme, re.M))
    assert set(recorded) == {"uPlot.iife.min.js", "uPlot.min.css"}
    for name, digest in recorded.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    assert "registry.npmjs.org/uplot/-/uplot-1.6.32.tgz" in readme
