"""The judge job: ask an OpenAI-compatible endpoint for a 0-10 score of each (query, a
method's top-1) pair of a benchmark run, in one or both orders, store every answer as it
comes, and keep the run's summary per method up to date. It only makes HTTP calls, so it
runs on the cpu queue. Resumable: a pair with a verdict is never asked again (a transport
error is not a verdict, so those pairs are asked again)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import JobCancelled, JobInputError
from curation.models import Image
from evaluation.judge_keys import key_read, key_remove, keys_sweep
from evaluation.models import BenchmarkQuery, JudgeRun, JudgeVerdict, Retrieval
from evaluation.stats import bootstrap_mean_ci
from ml.judge import JudgeConfig, JudgeResult, judge_many
from ml.judge.client import STATUSES
from training.models import Job
from training.reporting import JobReporter
from training.runners import runner

REPLY_CHARS = 1000
SUMMARY_EVERY_S = 10.0
ORDERS = (JudgeVerdict.Order.QUERY_FIRST, JudgeVerdict.Order.CANDIDATE_FIRST)
# The statuses the paper drops from the mean: the judge answered, but not with a score.
BAD_REPLY = ("unparsable", "out_of_range")
STORED_FIELDS = [
    "candidate",
    "status",
    "score",
    "reply",
    "seconds",
    "prompt_tokens",
    "completion_tokens",
]


@dataclass(frozen=True)
class Pair:
    query: int  # BenchmarkQuery id
    query_image: int
    method: str
    candidate: int
    order: str


def pairs_of(run: JudgeRun) -> list[Pair]:
    """Every pair the run asks about, in query order: each chosen method's top-1, in the
    query-first order and, with both orders, the candidate-first order too."""
    orders = ORDERS if run.both_orders else ORDERS[:1]
    queries = dict(
        BenchmarkQuery.objects.filter(run=run.benchmark_id).values_list("id", "image_id")
    )
    retrievals = (
        Retrieval.objects.filter(query__run=run.benchmark_id, method__in=run.methods)
        .order_by("query__position", "method")
        .values_list("query_id", "method", "hits")
    )
    pairs = []
    for query_id, method, hits in retrievals:
        if not hits:
            continue
        for order in orders:
            pairs.append(Pair(query_id, queries[query_id], method, int(hits[0]), order))
    return pairs


def pairs_missing(run: JudgeRun) -> list[Pair]:
    """The run's pairs without a verdict (an "error" answer counts as none)."""
    answered = set(
        JudgeVerdict.objects.filter(judge_run=run)
        .exclude(status="error")
        .values_list("query_id", "method", "order")
    )
    return [p for p in pairs_of(run) if (p.query, p.method, p.order) not in answered]


def _scrub(text: str, key: str | None) -> str:
    # A server that echoes the request's headers back must not put the key into a row.
    return text.replace(key, "[api key]") if key else text


def _image_bytes(ids: set[int]) -> dict[int, bytes]:
    images = Image.objects.only("id", "file").in_bulk(list(ids))
    data = {}
    for pk, image in images.items():
        with image.file.open("rb") as handle:
            data[pk] = handle.read()
    return data


def _verdict(run: JudgeRun, pair: Pair, result: JudgeResult, key: str | None) -> JudgeVerdict:
    text = result.reply if result.reply is not None else (result.error or "")
    return JudgeVerdict(
        judge_run=run,
        query_id=pair.query,
        method=pair.method,
        candidate_id=pair.candidate,
        order=pair.order,
        status=result.status,
        score=result.score if result.status == "ok" else None,
        reply=_scrub(text, key)[:REPLY_CHARS],
        seconds=round(result.elapsed_s, 3),
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )


def _blocks(pairs: list[Pair], size: int) -> Iterator[list[Pair]]:
    for start in range(0, len(pairs), size):
        yield pairs[start : start + size]


def _api_key(job: Job) -> str | None:
    key = key_read(job.pk)
    if key:
        return key
    if job.params.get("key") == "form":
        raise JobInputError(
            "the API key typed in the form is deleted when its job ends; resume the judge "
            "run from its page and type the key again"
        )
    return settings.RELSIM_JUDGE_API_KEY or None


def _config(run: JudgeRun, key: str | None) -> JudgeConfig:
    config = JudgeConfig(
        base_url=run.endpoint,
        model=run.model_name,
        api_key=key,
        temperature=run.temperature,
    )
    try:
        config.validate()
    except ValueError as exc:
        raise JobInputError(f"the judge settings are not valid: {exc}") from None
    return config


def _ask(
    run: JudgeRun,
    block: list[Pair],
    config: JudgeConfig,
    concurrency: int,
    key: str | None,
    reporter: JobReporter,
    done: int,
    total: int,
) -> tuple[list[JudgeVerdict], bool]:
    """Ask the judge about one batch of pairs and store the answers at once; returns them
    and whether a stop request cut the batch short."""
    images = _image_bytes({p.query_image for p in block} | {p.candidate for p in block})
    inputs = [
        (images[p.query_image], images[p.candidate])
        if p.order == JudgeVerdict.Order.QUERY_FIRST
        else (images[p.candidate], images[p.query_image])
        for p in block
    ]

    def progress(finished: int, _total: int, message: str) -> None:
        # Asked, not judged: a transport error gets no verdict and is asked again later.
        # The reporter writes "done/total" in front: "16/24 pairs asked".
        reporter.progress(done + finished, total, "pairs asked")

    outcome = judge_many(
        inputs,
        config,
        concurrency=concurrency,
        progress=progress,
        should_stop=reporter.should_stop,
    )
    answered = [
        _verdict(run, pair, result, key)
        for pair, result in zip(block, outcome.results, strict=True)
        if result is not None
    ]
    with transaction.atomic():
        JudgeVerdict.objects.bulk_create(
            answered,
            update_conflicts=True,
            unique_fields=["judge_run", "query", "method", "order"],
            update_fields=STORED_FIELDS,
        )
    return answered, outcome.stopped


@runner(Job.Kind.JUDGE)
def run_judge(job: Job, reporter: JobReporter) -> dict[str, Any]:
    try:
        return _run_judge(job, reporter)
    finally:
        # Whatever the ending (done, failed, cancelled), the key file goes with the job.
        key_remove(job.pk)


def _run_judge(job: Job, reporter: JobReporter) -> dict[str, Any]:
    run_id = job.params.get("judge_run")
    run = (
        JudgeRun.objects.select_related("benchmark").filter(pk=run_id).first()
        if isinstance(run_id, int)
        else None
    )
    if run is None:
        raise JobInputError(f"there is no judge run #{run_id}")
    if not run.benchmark.is_complete:
        raise JobInputError(f"benchmark run #{run.benchmark_id} is not complete")
    keys_sweep()
    key = _api_key(job)
    config = _config(run, key)
    concurrency = job.params.get("concurrency") or 4
    if not isinstance(concurrency, int) or concurrency < 1:
        raise JobInputError("concurrency must be a whole number >= 1")
    reporter.log(
        f"judge {run.model_name} at {run.endpoint}, key "
        f"{'from the form' if key_read(job.pk) else 'from the settings' if key else 'none'}"
    )

    started = time.monotonic()
    base_seconds = float((run.summary or {}).get("seconds") or 0.0)
    todo = pairs_missing(run)
    total = len(pairs_of(run))
    done = total - len(todo)
    reporter.progress(done, total, "judging")
    reporter.log(f"{len(todo)} of {total} pairs to ask")
    block_size = max(16, 4 * concurrency)
    last_summary = time.monotonic()
    try:
        for block in _blocks(todo, block_size):
            if reporter.should_stop():
                break
            answered, stopped = _ask(run, block, config, concurrency, key, reporter, done, total)
            done += sum(1 for verdict in answered if verdict.status != "error")
            if time.monotonic() - last_summary >= SUMMARY_EVERY_S:
                # The page shows the figures so far; a bootstrap per batch would cost more.
                judge_summary_store(run=run, seconds=base_seconds + time.monotonic() - started)
                last_summary = time.monotonic()
            if stopped:
                break
            if answered and all(verdict.status == "error" for verdict in answered):
                raise JobInputError(
                    f"the judge endpoint failed all {len(answered)} requests of the last "
                    f"batch ({answered[-1].reply[:200]}); the answers so far are kept and a "
                    "resumed run asks only the missing pairs"
                )
    finally:
        summary = judge_summary_store(run=run, seconds=base_seconds + time.monotonic() - started)
    if reporter.should_stop():
        raise JobCancelled(f"{summary['answered']} of {summary['pairs']} pairs judged")
    reporter.progress(total, total, "done")
    return {
        "judge_run": run.pk,
        "benchmark": run.benchmark_id,
        "pairs": summary["pairs"],
        "answered": summary["answered"],
    }


# --- summary -------------------------------------------------------------------------------


def _mean(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "low": None, "high": None}
    mean, low, high = bootstrap_mean_ci(values)
    return {"mean": round(mean, 4), "low": round(low, 4), "high": round(high, 4)}


def judge_summary(run: JudgeRun, *, seconds: float | None = None) -> dict[str, Any]:
    """The run's figures from its stored verdicts: per method the mean score over valid
    replies (0-10) with a bootstrap 95% interval, the counts of each status and, with both
    orders, each order's mean and their difference (position bias); plus totals, time and
    the cost estimate."""
    counts: dict[str, dict[str, int]] = {m: dict.fromkeys(STATUSES, 0) for m in run.methods}
    scores: dict[str, list[float]] = defaultdict(list)
    by_order: dict[tuple[str, str], list[float]] = defaultdict(list)
    prompt_tokens = completion_tokens = 0
    request_seconds = 0.0
    rows = JudgeVerdict.objects.filter(judge_run=run).values_list(
        "method", "order", "status", "score", "seconds", "prompt_tokens", "completion_tokens"
    )
    for method, order, status, score, spent, prompt, completion in rows:
        counts.setdefault(method, dict.fromkeys(STATUSES, 0))
        counts[method][status] = counts[method].get(status, 0) + 1
        if status == "ok" and score is not None:
            scores[method].append(score)
            by_order[method, order].append(score)
        prompt_tokens += prompt
        completion_tokens += completion
        request_seconds += spent
    labels = {key: str(info.get("label") or key) for key, info in run.benchmark.methods.items()}
    methods = {}
    for method, tally in counts.items():
        entry: dict[str, Any] = {
            "label": labels.get(method, method),
            "n": sum(tally.values()),
            "valid": tally["ok"],
            "refused": tally["refused"],
            "bad_replies": sum(tally[s] for s in BAD_REPLY),
            "errors": tally["error"],
            "counts": tally,
            **_mean(scores[method]),
        }
        if run.both_orders:
            first = by_order[method, JudgeVerdict.Order.QUERY_FIRST]
            second = by_order[method, JudgeVerdict.Order.CANDIDATE_FIRST]
            entry["orders"] = {
                JudgeVerdict.Order.QUERY_FIRST.value: _order_mean(first),
                JudgeVerdict.Order.CANDIDATE_FIRST.value: _order_mean(second),
            }
            entry["position_bias"] = (
                round(sum(first) / len(first) - sum(second) / len(second), 4)
                if first and second
                else None
            )
        methods[method] = entry
    pairs = len(pairs_of(run))
    answered = sum(m["n"] - m["errors"] for m in methods.values())
    previous = run.summary or {}
    settings_used = dict(previous.get("settings") or {})
    summary: dict[str, Any] = {
        "settings": settings_used,
        "methods": methods,
        "pairs": pairs,
        "answered": answered,
        "missing": pairs - answered,
        "complete": answered >= pairs,
        "seconds": round(seconds if seconds is not None else previous.get("seconds") or 0.0, 3),
        "request_seconds": round(request_seconds, 3),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost": _cost(settings_used, prompt_tokens, completion_tokens),
        "updated_at": timezone.now().isoformat(),
    }
    return summary


def _order_mean(values: list[float]) -> dict[str, Any]:
    return {"valid": len(values), "mean": round(sum(values) / len(values), 4) if values else None}


def _cost(settings_used: dict[str, Any], prompt_tokens: int, completion_tokens: int) -> Any:
    """The cost estimate from the prices per million tokens, when prices were given and the
    endpoint reported its token usage."""
    price_in = settings_used.get("price_input_per_m")
    price_out = settings_used.get("price_output_per_m")
    if price_in is None and price_out is None:
        return None
    if not prompt_tokens and not completion_tokens:
        return {"amount": None, "note": "the endpoint reported no token usage"}
    amount = (prompt_tokens * (price_in or 0.0) + completion_tokens * (price_out or 0.0)) / 1e6
    return {"amount": round(amount, 6), "note": ""}


def judge_summary_store(*, run: JudgeRun, seconds: float | None = None) -> dict[str, Any]:
    summary = judge_summary(run, seconds=seconds)
    JudgeRun.objects.filter(pk=run.pk).update(summary=summary)
    run.summary = summary
    return summary
