"""Judge runs against a local stand-in for an OpenAI-compatible chat endpoint (a real HTTP
server on 127.0.0.1): the verdicts and the summary, the API key that reaches the server but
no row, log or file, and resuming a run that stopped midway."""

from __future__ import annotations

import json
from collections import Counter
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from curation.models import Image
from evaluation.judge_jobs import judge_summary, pairs_of
from evaluation.judge_keys import key_path
from evaluation.models import BenchmarkRun, JudgeRun, JudgeVerdict
from tests.evaluation.judge_stand_in import (  # noqa: F401 (the stand_in fixture)
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    StandIn,
    default_reply,
    stand_in_server,
)
from tests.evaluation.test_benchmark_runs import (  # noqa: F401 (fixtures)
    BASELINE,
    Pool,
    _fresh_caches,
    finished_run,
    pool,
)
from training.execution import execute_job
from training.models import Job
from training.reporting import JobReporter

pytestmark = pytest.mark.django_db

KEY = "sk-test-0123456789-secret"


@pytest.fixture
def benchmark(pool: Pool, stand_in: StandIn) -> BenchmarkRun:  # noqa: F811
    run = finished_run(n_queries=12, k=3)
    stand_in.images = dict(Image.objects.values_list("sha256", "id"))
    return run


def start(client: Client, benchmark: BenchmarkRun, stand_in: StandIn, **fields: Any) -> JudgeRun:
    data = {
        "endpoint": stand_in.url,
        "model_name": "stand-in-4o",
        "api_key": KEY,
        "temperature": 0.7,
        "methods": ["phash", BASELINE],
        "concurrency": 2,
        "price_input_per_m": 2.5,
        "price_output_per_m": 10,
        **fields,
    }
    response = client.post(reverse("judge_new", args=[benchmark.pk]), data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    return JudgeRun.objects.latest("id")


def run_job(run: JudgeRun) -> Job:
    run.refresh_from_db()
    assert run.job is not None
    execute_job(run.job.pk, worker="test")
    run.refresh_from_db()
    return Job.objects.get(pk=run.job.pk)


def expected_first_second(verdict: JudgeVerdict) -> tuple[int, int]:
    query = verdict.query.image_id
    if verdict.order == JudgeVerdict.Order.QUERY_FIRST:
        return query, verdict.candidate_id
    return verdict.candidate_id, query


# --- a whole run ----------------------------------------------------------------------------


def test_a_judge_run_stores_each_answer_and_a_summary_over_valid_scores_only(
    benchmark: BenchmarkRun, stand_in: StandIn, admin_client: Client
) -> None:
    run = start(admin_client, benchmark, stand_in)
    job = run_job(run)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.queue == Job.Queue.CPU

    verdicts = list(JudgeVerdict.objects.filter(judge_run=run).select_related("query"))
    assert len(verdicts) == 12 * 2 == len(stand_in.seen)
    # The top-1 of each method for each query, query first.
    tops = {
        (query, method): hits[0]
        for query, method, hits in benchmark.queries.values_list(
            "retrievals__query_id", "retrievals__method", "retrievals__hits"
        )
    }
    for verdict in verdicts:
        assert verdict.order == JudgeVerdict.Order.QUERY_FIRST
        assert verdict.candidate_id == tops[verdict.query_id, verdict.method]
        assert verdict.prompt_tokens == PROMPT_TOKENS and verdict.seconds > 0
    # What the server answered is what was stored, pair by pair.
    served = Counter((first, second, text) for first, second, _status, text in stand_in.seen)
    stored = Counter((*expected_first_second(v), v.reply) for v in verdicts)
    assert stored == served
    for verdict in verdicts:
        if verdict.reply.startswith("I'm sorry"):
            assert verdict.status == "refused" and verdict.score is None
        elif verdict.reply.startswith("Somewhere"):
            assert verdict.status == "unparsable" and verdict.score is None
        elif verdict.reply == "12":
            assert verdict.status == "out_of_range" and verdict.score is None
        else:
            assert verdict.status == "ok" and verdict.score == float(verdict.reply)

    summary = run.summary
    assert summary["pairs"] == summary["answered"] == 24 and summary["complete"]
    for method in ("phash", BASELINE):
        mine = [v for v in verdicts if v.method == method]
        valid = [v.score for v in mine if v.status == "ok"]
        entry = summary["methods"][method]
        assert entry["n"] == len(mine) == 12
        assert entry["valid"] == len(valid)
        assert entry["refused"] == sum(v.status == "refused" for v in mine)
        assert entry["bad_replies"] == sum(v.status in ("unparsable", "out_of_range") for v in mine)
        assert entry["mean"] == pytest.approx(sum(valid) / len(valid), abs=1e-4)
        assert entry["low"] <= entry["mean"] <= entry["high"]
    totals = Counter(v.status for v in verdicts)
    assert totals["refused"] == 4 and totals["unparsable"] == 4 and totals["out_of_range"] == 4
    assert summary["prompt_tokens"] == 24 * PROMPT_TOKENS
    cost = (24 * PROMPT_TOKENS * 2.5 + 24 * COMPLETION_TOKENS * 10) / 1e6
    assert summary["cost"]["amount"] == pytest.approx(cost)
    assert summary["seconds"] > 0


def test_the_key_reaches_the_server_but_no_row_log_or_file(
    benchmark: BenchmarkRun, stand_in: StandIn, admin_client: Client, data_dir: Path
) -> None:
    run = start(admin_client, benchmark, stand_in)
    assert run.job is not None
    secret = key_path(run.job.pk)
    assert secret.read_text() == KEY
    assert secret.stat().st_mode & 0o777 == 0o600
    assert secret.parent.stat().st_mode & 0o777 == 0o700

    job = run_job(run)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert stand_in.authorizations and set(stand_in.authorizations) == {f"Bearer {KEY}"}
    assert not secret.exists() and list(secret.parent.iterdir()) == []

    job.refresh_from_db()
    run.refresh_from_db()
    places = [
        json.dumps(job.params),
        json.dumps(job.artifacts),
        job.log_tail,
        job.error,
        job.progress_message,
        json.dumps(job.resume_point),
        run.endpoint,
        run.model_name,
        json.dumps(run.summary),
        json.dumps(run.methods),
        *JudgeVerdict.objects.filter(judge_run=run).values_list("reply", flat=True),
    ]
    assert job.log_tail  # the log says where the key came from, not what it is
    assert not [place for place in places if KEY in place]
    everything = json.dumps(list(JudgeVerdict.objects.values()), default=str)
    assert KEY not in everything
    # Nor anywhere in the data directory.
    for path in data_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert KEY.encode() not in path.read_bytes(), path


def test_the_form_rerenders_without_the_key_and_asks_for_one_when_the_server_has_none(
    benchmark: BenchmarkRun, stand_in: StandIn, admin_client: Client, settings: Any
) -> None:
    settings.RELSIM_JUDGE_API_KEY = ""
    url = reverse("judge_new", args=[benchmark.pk])
    page = admin_client.post(url, {"endpoint": "ftp://x", "api_key": KEY, "methods": ["phash"]})
    text = page.content.decode()
    assert "must start with http:// or https://" in text
    assert KEY not in text and 'type="password"' in text
    page = admin_client.post(
        url,
        {
            "endpoint": stand_in.url,
            "model_name": "m",
            "temperature": 0.7,
            "methods": ["phash"],
            "concurrency": 1,
        },
    )
    assert "Type the endpoint&#x27;s API key" in page.content.decode()
    settings.RELSIM_JUDGE_API_KEY = "from-the-environment"
    start(admin_client, benchmark, stand_in, api_key="")
    run = JudgeRun.objects.get()
    job = run_job(run)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert set(stand_in.authorizations) == {"Bearer from-the-environment"}


def test_both_orders_ask_each_pair_twice_and_measure_position_bias(
    benchmark: BenchmarkRun, stand_in: StandIn, admin_client: Client
) -> None:
    run = start(admin_client, benchmark, stand_in, both_orders="on", methods=[BASELINE])
    job = run_job(run)
    assert job.status == Job.Status.SUCCEEDED, job.error
    verdicts = list(JudgeVerdict.objects.filter(judge_run=run).select_related("query"))
    assert Counter(v.order for v in verdicts) == {"query_first": 12, "candidate_first": 12}
    served = Counter((first, second) for first, second, _status, _text in stand_in.seen)
    assert served == Counter(expected_first_second(v) for v in verdicts)
    entry = run.summary["methods"][BASELINE]
    means = {}
    for order in ("query_first", "candidate_first"):
        scores = [v.score for v in verdicts if v.order == order and v.status == "ok"]
        means[order] = sum(scores) / len(scores)
        assert entry["orders"][order]["mean"] == pytest.approx(means[order], abs=1e-4)
    bias = means["query_first"] - means["candidate_first"]
    assert entry["position_bias"] == pytest.approx(bias, abs=1e-4)


def test_the_judge_page_shows_the_papers_table_ascending(
    benchmark: BenchmarkRun, stand_in: StandIn, admin_client: Client
) -> None:
    run = start(admin_client, benchmark, stand_in)
    run_job(run)
    assert run.job is not None
    response = admin_client.get(reverse("judge_detail", args=[run.pk]))
    page = response.content.decode()
    rows = response.context["rows"]
    means = [row["mean"] for row in rows]
    assert means == sorted(means) and len(rows) == 2
    assert "Judge score (0-10)" in page and "Bad replies" in page
    assert reverse("job_detail", args=[run.job.pk]) in page
    first = run.summary["methods"][rows[0]["key"]]
    assert f"{first['mean']:.2f} [{first['low']:.2f}, {first['high']:.2f}]" in page
    listing = admin_client.get(reverse("benchmark_list")).content.decode()
    assert reverse("judge_detail", args=[run.pk]) in listing


def test_annotators_may_not_see_or_start_judge_runs(
    benchmark: BenchmarkRun, stand_in: StandIn, admin_client: Client, annotator: Any
) -> None:
    run = start(admin_client, benchmark, stand_in)
    client = Client()
    client.force_login(annotator)
    assert client.get(reverse("judge_new", args=[benchmark.pk])).status_code == 403
    assert client.post(reverse("judge_new", args=[benchmark.pk]), {}).status_code == 403
    assert client.get(reverse("judge_detail", args=[run.pk])).status_code == 403
    assert client.post(reverse("judge_resume", args=[run.pk]), {}).status_code == 403


# --- stopping and resuming ------------------------------------------------------------------


def test_a_run_that_failed_midway_resumes_asking_only_the_missing_pairs(
    benchmark: BenchmarkRun, stand_in: StandIn, admin_client: Client
) -> None:
    healthy = 10

    def failing(index: int, first: int, second: int) -> tuple[int, dict[str, Any]]:
        if index >= healthy:
            return 401, {"error": {"message": "invalid api key"}}
        return default_reply(index, first, second)

    stand_in.reply = failing
    run = start(admin_client, benchmark, stand_in, both_orders="on")
    total = len(pairs_of(run))
    assert total == 12 * 2 * 2
    job = run_job(run)
    assert job.status == Job.Status.FAILED
    assert "failed all" in job.error and "asks only the missing pairs" in job.error
    assert run.job is not None and not key_path(run.job.pk).exists()
    answered = JudgeVerdict.objects.filter(judge_run=run).exclude(status="error")
    assert answered.count() == healthy
    first_round = stand_in.answered_pairs()
    assert sum(first_round.values()) == healthy
    assert run.summary["missing"] == total - healthy

    # A retry of that job cannot use the key from the form any more: it says so.
    Job.objects.filter(pk=run.job.pk).update(status=Job.Status.PENDING)
    again = run_job(run)
    assert again.status == Job.Status.FAILED and "type the key again" in again.error
    assert len(stand_in.seen) == 2 * 16  # two batches, the second all failures; none since

    stand_in.reply = default_reply
    stand_in.seen.clear()
    response = admin_client.post(reverse("judge_resume", args=[run.pk]), {"api_key": KEY})
    assert response.status_code == 302
    resumed = run_job(run)
    assert resumed.status == Job.Status.SUCCEEDED, resumed.error
    second_round = stand_in.answered_pairs()
    assert sum(second_round.values()) == total - healthy
    verdicts = list(JudgeVerdict.objects.filter(judge_run=run).select_related("query"))
    assert len(verdicts) == total and not [v for v in verdicts if v.status == "error"]
    assert Counter(expected_first_second(v) for v in verdicts) == first_round + second_round
    assert run.summary["complete"] and run.summary["answered"] == total
    assert set(stand_in.authorizations) == {f"Bearer {KEY}"}


def test_a_cancelled_run_resumes_where_it_stopped(
    benchmark: BenchmarkRun,
    stand_in: StandIn,
    admin_client: Client,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    settings.RELSIM_JUDGE_API_KEY = "env-key"
    stop_after = 7
    monkeypatch.setattr(JobReporter, "should_stop", lambda self: len(stand_in.seen) >= stop_after)
    run = start(admin_client, benchmark, stand_in, api_key="", concurrency=1)
    job = run_job(run)
    assert job.status == Job.Status.CANCELLED
    assert JudgeVerdict.objects.filter(judge_run=run).count() == stop_after
    monkeypatch.undo()
    settings.RELSIM_JUDGE_API_KEY = "env-key"

    out = StringIO()
    call_command("evaluate", "judge", "--resume", str(run.pk), "--here", stdout=out, stderr=out)
    run.refresh_from_db()
    assert run.job is not None and run.job.status == Job.Status.SUCCEEDED
    assert len(stand_in.seen) == 24
    assert Counter((f, s) for f, s, _status, _text in stand_in.seen) == Counter(
        expected_first_second(v)
        for v in JudgeVerdict.objects.filter(judge_run=run).select_related("query")
    )
    assert JudgeVerdict.objects.filter(judge_run=run).count() == 24


def test_the_command_judges_with_the_environments_key_only(
    benchmark: BenchmarkRun, stand_in: StandIn, settings: Any
) -> None:
    settings.RELSIM_JUDGE_API_KEY = "env-key"
    with pytest.raises(CommandError, match="unrecognized arguments: --api-key"):
        call_command(
            "evaluate", "judge", "--benchmark", str(benchmark.pk), "--api-key", "x", "--here"
        )
    with pytest.raises(CommandError, match="--url: This field is required"):
        call_command("evaluate", "judge", "--benchmark", str(benchmark.pk), "--here")
    with pytest.raises(CommandError, match="--url: The endpoint must start with http"):
        call_command(
            "evaluate", "judge", "--benchmark", str(benchmark.pk), "--url", "ftp://x", "--here"
        )
    assert not JudgeRun.objects.exists()
    out = StringIO()
    call_command(
        "evaluate",
        "judge",
        "--benchmark",
        str(benchmark.pk),
        "--url",
        stand_in.url,
        "--model",
        "m",
        "--methods",
        "phash",
        "--here",
        stdout=out,
        stderr=StringIO(),
    )
    run = JudgeRun.objects.get()
    assert run.methods == ["phash"] and run.job is not None
    assert run.job.status == Job.Status.SUCCEEDED
    assert set(stand_in.authorizations) == {"Bearer env-key"}
    assert run.job.params["key"] == "settings" and "env-key" not in json.dumps(run.job.params)


def test_the_summary_of_a_run_without_verdicts_is_empty_but_complete_in_shape(
    benchmark: BenchmarkRun, stand_in: StandIn, admin_client: Client
) -> None:
    run = start(admin_client, benchmark, stand_in)
    summary = judge_summary(run)
    assert summary["pairs"] == 24 and summary["answered"] == 0 and summary["missing"] == 24
    assert summary["methods"]["phash"]["mean"] is None


@pytest.mark.django_db(transaction=True)
def test_a_run_the_broker_never_took_says_so_and_leaves_no_key_behind(
    benchmark: BenchmarkRun,
    stand_in: StandIn,
    admin_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(job_id: int, *, queue: str) -> None:
        raise ConnectionError("connection refused")

    monkeypatch.setattr("training.queueing.send_job", refuse)
    url = reverse("judge_new", args=[benchmark.pk])
    data = {
        "endpoint": stand_in.url,
        "model_name": "m",
        "api_key": KEY,
        "temperature": 0.7,
        "methods": ["phash"],
        "concurrency": 1,
    }
    page = admin_client.post(url, data, follow=True).content.decode()
    assert "the job queue cannot be reached" in page
    run = JudgeRun.objects.get()
    assert run.job is not None and run.job.status == Job.Status.FAILED
    assert not key_path(run.job.pk).exists()
