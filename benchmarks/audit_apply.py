"""How fast an audit decision over a paper-size drafting batch (114k model drafts) is recorded
and carried out, for an accepted batch and for one sent back; prints a table and writes
var/bench/audit_apply.json.

    .venv/bin/python -m benchmarks.audit_apply                  # two batches of 114k drafts
    .venv/bin/python -m benchmarks.audit_apply --drafts 3000    # a quick check

The batches get a fresh database (by default PostgreSQL `relsim_bench_audit` on
127.0.0.1:5432, user postgres; `--database-url` names another one, which is DROPPED and
recreated, or an SQLite file, which is deleted) and a temporary data directory; the
measuring runs in a child process with its own settings, as in benchmarks.curation_pages.

For each batch: the sample is drawn (audit_draw) and judged by a reviewer, then the
request part, audit_accept or audit_send_back with enqueue=False (it only records the
decision and the job), is timed apart from carrying the decision out, which is the
AUDIT_APPLY job run inline with execute_job, as a worker would. The outcome is checked:
every remaining draft moved, with its history entry, and the sample left as judged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.curation_pages import (
    _database_version,
    _percentile,
    measure_in_child,
)
from benchmarks.reporting import (
    images_sharing_file,
    machine,
    write_report,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/relsim_bench_audit"
DEFAULT_OUT = ROOT / "var" / "bench" / "audit_apply.json"
# Recording a decision is a request: it must not grow with the batch.
TARGET_REQUEST_MS = 200.0
SEED_BATCH = 5_000
# Model drafts as a captioner writes them; each says "behind", which a reviewer's small
# edit changes, so the edit stays within RELSIM_REVIEW_EDIT_WORDS.
DRAFTS = (
    "A {Animal} hides behind a {Object}.",
    "A {Person} stands behind a {Object} on a {Place}.",
    "A {Object} lies behind a {Animal} near a {Shape}.",
    "Two {Animals} wait behind a {Food} and a {Object}.",
)
DECISIONS = ("accept", "send back")


# --- the parent: the database, the child process, the table ----------------------------------


def _parent(args: argparse.Namespace) -> int:
    print(
        f"Two drafting batches of {args.drafts:,} model drafts, a sample of {args.sample} "
        f"each; one accepted, one sent back; database {args.database_url}"
    )
    load_before = os.getloadavg()
    print(
        f"CPUs: {os.cpu_count()}, load average (1, 5, 15 min) "
        + ", ".join(f"{v:.2f}" for v in load_before),
        flush=True,
    )
    result = measure_in_child(
        "benchmarks.audit_apply",
        ["--drafts", str(args.drafts)],
        database_url=args.database_url,
        keep_db=args.keep_db,
        prefix="relsim-bench-audit-",
        RELSIM_AUDIT_SAMPLE_SIZE=str(args.sample),
    )
    load_after = os.getloadavg()

    print(
        f"\n{args.drafts:,} drafts per batch, sample {result['sample']}, "
        f"chunks of {result['chunk']:,}; {result['database_version'][:60]}\n"
    )
    _print_table(result["batches"])
    passed = all(batch["passed"] for batch in result["batches"])
    print()
    for batch in result["batches"]:
        failed = [name for name, ok in batch["checks"].items() if not ok]
        verdict = "PASS" if batch["passed"] else "FAIL: " + "; ".join(failed)
        print(
            f"{batch['decision']:<10} changed {batch['changed']:,} (expected "
            f"{batch['expected_changed']:,}), skipped {batch['skipped']:,} (expected 0), "
            f"sample {batch['sample_figures']}: {verdict}"
        )
    print(
        f"\nSeeding {2 * args.drafts:,} images, drafts and their history took "
        f"{result['seed_s']:.1f} s."
    )
    print(
        "Load average (1, 5, 15 min): before "
        + ", ".join(f"{v:.2f}" for v in load_before)
        + "; after "
        + ", ".join(f"{v:.2f}" for v in load_after)
    )
    print("Correctness: " + ("PASS" if passed else "FAIL"))
    write_report(
        args.out,
        {
            "machine": machine(load_before, load_after),
            "target_request_ms": TARGET_REQUEST_MS,
            "passed": passed,
            **result,
        },
    )
    return 0 if passed else 1


def _print_table(batches: list[dict[str, Any]]) -> None:
    head = (
        f"{'step':<44} {'wall':>9} {'drafts/s':>9} {'queries':>7} {'SQL':>9} {'py CPU':>9}  flags"
    )
    print(head)
    print("-" * len(head))
    for batch in batches:
        decision = batch["decision"]
        apply = batch["apply"]
        for name, row, rate, flag in (
            ("draw the sample (audit_draw)", batch["draw"], "", ""),
            (f"judge the sample ({batch['sample']} reviews)", batch["judge"], "", ""),
            (
                "record the decision (the request)",
                batch["request"],
                "",
                f"over {TARGET_REQUEST_MS:.0f} ms"
                if batch["request"]["wall_s"] * 1000 > TARGET_REQUEST_MS
                else "",
            ),
            (
                "carry it out (execute_job)",
                apply,
                f"{apply['drafts_per_s']:,.0f}",
                "" if apply["status"] == "succeeded" else f"job {apply['status']}",
            ),
        ):
            print(
                f"{decision + ': ' + name:<44} {_duration(row['wall_s']):>9} {rate:>9} "
                f"{row['queries']:>7} {_duration(row['sql_s']):>9} "
                f"{_duration(row['cpu_s']):>9}  {flag}".rstrip()
            )
        print(
            f"{'  each chunk of ' + format(batch['chunk'], ',') + ' drafts':<44} "
            f"p50 {apply['chunk_p50_ms']:.0f} ms, p95 {apply['chunk_p95_ms']:.0f} ms, "
            f"max {apply['chunk_max_ms']:.0f} ms ({apply['chunks']} chunks)"
        )
    print(
        "(SQL: time in SQL as the app sees it, round trips included; py CPU: the Django "
        "process's CPU time; PostgreSQL runs on the same cores)"
    )


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"


# --- the child: seed, decide, carry out, check --------------------------------------------------


@dataclass
class Tally:
    """Queries and time in SQL on this thread's connection (the job's heartbeat thread has
    its own)."""

    queries: int = 0
    sql_s: float = 0.0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.sql_s += time.perf_counter() - started
            self.queries += 1


@dataclass
class Timed:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    tally: Tally = field(default_factory=Tally)

    def row(self) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "queries": self.tally.queries,
            "sql_s": self.tally.sql_s,
        }


@contextmanager
def _timed() -> Iterator[Timed]:
    from django.db import connection

    timed = Timed()
    with connection.execute_wrapper(timed.tally):
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            yield timed
        finally:
            timed.wall_s = time.perf_counter() - started
            timed.cpu_s = time.process_time() - cpu_started


def _users() -> tuple[Any, Any]:
    from django.contrib.auth import get_user_model

    from core.roles import ADMIN, REVIEWER, assign_role

    made = []
    for name, role in (("bench-admin", ADMIN), ("bench-reviewer", REVIEWER)):
        user = get_user_model()(username=name)
        user.set_unusable_password()
        user.save()
        assign_role(user, role)
        made.append(user)
    return made[0], made[1]


def _base_image() -> Any:
    import io

    from PIL import Image as PILImage

    from curation.intake import normalise_image
    from curation.services import image_store

    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64), (40, 120, 200)).save(buffer, "PNG")
    return image_store(normalised=normalise_image(buffer.getvalue())).image


def _seed_batch(base: Any, drafts: int, first: int) -> int:
    """A finished drafting job and its drafts, one per new image, each with the history
    entry caption_create writes. Every image row points at the one stored file: applying a
    decision never reads image files."""
    from django.db import transaction

    from captions.lint import lint_caption
    from captions.models import Caption, CaptionRevision
    from captions.text import clean_caption_text
    from curation.models import Image
    from training.models import Job

    texts = [clean_caption_text(text) for text in DRAFTS]
    # Every draft should be approvable: the accept's expected count rests on it.
    assert not any(lint_caption(text).errors for text in texts), "a seed draft fails lint"
    job = Job.objects.create(kind=Job.Kind.CAPTION, status=Job.Status.SUCCEEDED, progress=1.0)
    for start in range(first, first + drafts, SEED_BATCH):
        numbers = range(start, min(start + SEED_BATCH, first + drafts))
        with transaction.atomic():
            images = Image.objects.bulk_create(
                images_sharing_file(base, numbers), batch_size=SEED_BATCH
            )
            # The fields caption_create sets for a model draft of one image.
            captions = Caption.objects.bulk_create(
                [
                    Caption(
                        image_id=image.pk,
                        text=texts[n % len(texts)],
                        split="train",
                        status=Caption.Status.DRAFT,
                        source=Caption.Source.MODEL,
                        model_name="captioner #1",
                        prompt_version="anon-caption/v1",
                        draft_job_id=job.pk,
                        version=1,
                    )
                    for n, image in zip(numbers, images, strict=True)
                ],
                batch_size=SEED_BATCH,
            )
            CaptionRevision.objects.bulk_create(
                [
                    CaptionRevision(
                        caption_id=caption.pk,
                        actor=None,
                        action=CaptionRevision.Action.CREATE,
                        text_before="",
                        text_after=caption.text,
                        status_after=Caption.Status.DRAFT,
                        version=1,
                    )
                    for caption in captions
                ],
                batch_size=SEED_BATCH,
            )
    return int(job.pk)


def _judge(audit: Any, reviewer: Any, *, edited: int, rejected: int) -> dict[str, int]:
    """The reviewer judges the whole sample: the first drafts approved unchanged, then some
    approved after a one-word edit, the last ones rejected."""
    from captions.models import Caption
    from captions.services import caption_approve, caption_reject

    ids = list(audit.sample_ids)
    captions = Caption.objects.in_bulk(ids)
    approved = len(ids) - edited - rejected
    for pk in ids[:approved]:
        caption_approve(caption=captions[pk], reviewer=reviewer)
    for pk in ids[approved : approved + edited]:
        text = captions[pk].text.replace(" behind ", " beside ", 1)
        caption_approve(caption=captions[pk], reviewer=reviewer, text=text)
    for pk in ids[approved + edited :]:
        caption_reject(caption=captions[pk], reviewer=reviewer, reason="too-vague")
    return {"approved": approved, "edited": edited, "rejected": rejected}


@contextmanager
def _chunk_clock(times: list[float]) -> Iterator[None]:
    """Times every chunk audit_apply moves (one transaction each: how long its locks last)."""
    from captions import audit_services

    original = audit_services._apply_chunk

    def timed(audit: Any, ids: list[int], note: str, comment: str) -> None:
        started = time.perf_counter()
        try:
            original(audit, ids, note, comment)
        finally:
            times.append(time.perf_counter() - started)

    audit_services._apply_chunk = timed
    try:
        yield
    finally:
        audit_services._apply_chunk = original


def _checks(
    decision: str, job_id: int, audit: Any, judged: dict[str, int], drafts: int
) -> dict[str, bool]:
    from django.conf import settings

    from captions.models import Caption, CaptionRevision
    from training.models import Job

    accepting = decision == "accept"
    expected = drafts - len(audit.sample_ids)
    moved_to = Caption.Status.APPROVED if accepting else Caption.Status.REJECTED
    batch = Caption.objects.filter(draft_job_id=job_id)
    rest = batch.exclude(pk__in=audit.sample_ids)
    sample = batch.filter(pk__in=audit.sample_ids)
    apply_job = Job.objects.get(pk=audit.apply_job_id)
    moved = rest.filter(status=moved_to, version=2, reviewer=audit.decided_by_id)
    if not accepting:
        moved = moved.filter(
            reject_reason=settings.RELSIM_AUDIT_SEND_BACK_REASON,
            reject_comment__startswith=f"sent back by audit of batch #{job_id}: ",
        )
    history = CaptionRevision.objects.filter(
        details__audit_of_batch=job_id,
        action=CaptionRevision.Action.APPROVE if accepting else CaptionRevision.Action.REJECT,
        version=2,
        actor=audit.decided_by_id,
    )
    return {
        "job succeeded": apply_job.status == Job.Status.SUCCEEDED and apply_job.progress == 1.0,
        "audit counts": (audit.changed, audit.skipped) == (expected, 0),
        "job artifacts": (apply_job.artifacts.get("changed"), apply_job.artifacts.get("skipped"))
        == (expected, 0),
        f"every remaining draft {moved_to}": moved.count() == rest.count() == expected,
        "no draft left": not batch.filter(status=Caption.Status.DRAFT).exists(),
        "one history entry each": history.count() == expected
        and history.values("caption_id").distinct().count() == expected,
        "sample as judged": (
            sample.filter(status=Caption.Status.APPROVED).count(),
            sample.filter(status=Caption.Status.REJECTED).count(),
            CaptionRevision.objects.filter(
                caption_id__in=audit.sample_ids, details__has_key="audit_of_batch"
            ).count(),
        )
        == (judged["approved"] + judged["edited"], judged["rejected"], 0),
    }


def _run_batch(
    decision: str, job_id: int, drafts: int, admin: Any, reviewer: Any
) -> dict[str, Any]:
    from captions import audit_services
    from captions.audit_selectors import audit_figures, judgements
    from captions.audit_services import audit_accept, audit_draw, audit_send_back
    from training.execution import execute_job

    with _timed() as draw:
        audit = audit_draw(job_id=job_id, user=admin)
    sample = len(audit.sample_ids)
    # An accepted batch: nearly all the sample approved unchanged; one sent back: half.
    misses = sample // 30 if decision == "accept" else None
    edited, rejected = (misses, misses) if misses is not None else (sample // 6, sample // 3)
    with _timed() as judge:
        judged = _judge(audit, reviewer, edited=edited, rejected=rejected)
    figures = audit_figures(judgements(audit))
    with _timed() as request:
        if decision == "accept":
            audit = audit_accept(audit=audit, user=admin, enqueue=False)
        else:
            audit = audit_send_back(
                audit=audit, user=admin, comment="too generic for the paper", enqueue=False
            )
    assert audit.apply_job_id is not None
    chunk_times: list[float] = []
    with _chunk_clock(chunk_times), _timed() as apply:
        status = execute_job(audit.apply_job_id, worker="bench")
    audit.refresh_from_db()
    checks = _checks(decision, job_id, audit, judged, drafts)
    checks["recommendation matches"] = figures.recommendation == (
        "accept" if decision == "accept" else "send back"
    )
    expected = drafts - sample
    chunks = [t * 1000 for t in chunk_times] or [0.0]
    result: dict[str, Any] = {
        "decision": decision,
        "batch_job": job_id,
        "drafts": drafts,
        "sample": sample,
        "chunk": audit_services.APPLY_CHUNK,
        "sample_figures": figures.summary(),
        "recommendation": figures.recommendation,
        "draw": draw.row(),
        "judge": judge.row(),
        "request": request.row(),
        "apply": {
            **apply.row(),
            "status": status,
            "drafts_per_s": audit.changed / apply.wall_s if apply.wall_s else 0.0,
            "chunks": len(chunk_times),
            "chunk_p50_ms": _percentile(chunks, 0.5),
            "chunk_p95_ms": _percentile(chunks, 0.95),
            "chunk_max_ms": max(chunks),
        },
        "changed": audit.changed,
        "skipped": audit.skipped,
        "expected_changed": expected,
        "checks": checks,
        "passed": all(checks.values()),
    }
    print(
        f"  {decision}: request {request.wall_s * 1000:.1f} ms; carried out in "
        f"{apply.wall_s:.1f} s ({result['apply']['drafts_per_s']:,.0f} drafts/s), "
        f"changed {audit.changed:,}, skipped {audit.skipped:,}: "
        f"{'PASS' if result['passed'] else 'FAIL'}",
        flush=True,
    )
    return result


def _child(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from captions import audit_services

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"  migrated in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    admin, reviewer = _users()
    base = _base_image()
    jobs = []
    for n, decision in enumerate(DECISIONS):
        jobs.append(_seed_batch(base, args.drafts, first=1 + n * args.drafts))
        print(
            f"  seeded the batch to {decision} ({args.drafts:,} drafts) at "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    seed_s = time.perf_counter() - started
    print(f"  seeded and analysed in {seed_s:.1f} s", flush=True)
    batches = [
        _run_batch(decision, job_id, args.drafts, admin, reviewer)
        for decision, job_id in zip(DECISIONS, jobs, strict=True)
    ]
    result = {
        "drafts": args.drafts,
        "sample": settings.RELSIM_AUDIT_SAMPLE_SIZE,
        "chunk": audit_services.APPLY_CHUNK,
        "database": connection.vendor,
        "database_version": _database_version(connection),
        "seed_s": seed_s,
        "batches": batches,
    }
    args.worker_out.write_text(json.dumps(result, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, default=114_000, help="drafts in each batch")
    parser.add_argument("--sample", type=int, default=30, help="RELSIM_AUDIT_SAMPLE_SIZE")
    parser.add_argument("--database-url", default=DEFAULT_DB, help="dropped and recreated!")
    parser.add_argument("--keep-db", action="store_true", help="leave the database")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_out:
        _child(args)
        return 0
    if args.sample < 6:
        parser.error("--sample must be at least 6 (the send-back batch rejects a third)")
    if args.drafts <= args.sample:
        parser.error("--drafts must be more than --sample: nothing would remain to decide")
    return _parent(args)


if __name__ == "__main__":
    sys.exit(main())
