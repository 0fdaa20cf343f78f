"""Server time of the search page over a paper-size pool: 114k images and a relsim index of
114k random unit vectors (384-d, float16); prints a table and writes var/bench/search_page.json.

    .venv/bin/python -m benchmarks.search_page                  # 114k images, 50 requests
    .venv/bin/python -m benchmarks.search_page --baselines 1    # plus a baseline index column
    .venv/bin/python -m benchmarks.search_page --images 20000 --requests 20

The pool gets a fresh database (by default PostgreSQL `relsim_bench` on 127.0.0.1:5432, user
postgres; `--database-url` names another one, which is DROPPED and recreated, or an SQLite
file, which is deleted) and a temporary data directory; the measuring runs in a child
process with its own settings, as in benchmarks.curation_pages.

Times are measured around Django's test client (middleware, view, SQL, template), with
DEBUG off, after warm-ups; the first request, which loads the index rows into memory, is
reported on its own. Every timed image query asks about a different image.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

# BLAS reads its thread count once, at import; the page multiplies a matrix by a vector.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "2")

from benchmarks.curation_pages import (  # noqa: E402
    DEFAULT_DB,
    _database_version,
    _percentile,
    measure_in_child,
)
from benchmarks.reporting import machine, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "var" / "bench" / "search_page.json"
DIM = 384
TARGET_P95_MS = 200.0
BATCH = 5_000
CAPTION_WORDS = ("Object", "Animal", "Person", "Place", "Shape", "Food", "Word", "Colour")


# --- the parent: the database, the child process, the table -----------------------------------


def _parent(args: argparse.Namespace) -> None:
    print(
        f"{args.images:,} images, relsim index {args.images:,} x {DIM} float16"
        f"{f' + {args.baselines} baseline index(es)' if args.baselines else ''}; "
        f"{args.requests} requests per row after {args.warmups} warm-ups; "
        f"database {args.database_url}"
    )
    load_before = os.getloadavg()
    print(f"CPUs: {os.cpu_count()}, load average {load_before[0]:.2f} (1 min)")
    result = measure_in_child(
        "benchmarks.search_page",
        [
            "--images",
            str(args.images),
            "--baselines",
            str(args.baselines),
            "--requests",
            str(args.requests),
            "--warmups",
            str(args.warmups),
            "--seed",
            str(args.seed),
        ],
        database_url=args.database_url,
        keep_db=args.keep_db,
        prefix="relsim-bench-search-",
        TRANSFORMERS_OFFLINE="1",
    )
    load_after = os.getloadavg()
    print(
        f"\n{result['images']:,} images on {result['database_version'][:60]} "
        f"(target p95 < {TARGET_P95_MS:.0f} ms for the image query)\n"
    )
    head = (
        f"{'request':<40} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
        f"{'SQL p50':>8} {'py CPU':>7}  flags"
    )
    print(head)
    print("-" * len(head))
    for name, row in result["rows"].items():
        flags = "p95 over target" if row["target"] and row["p95_ms"] >= TARGET_P95_MS else ""
        print(
            f"{name:<40} {row['queries']:>7} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} "
            f"{row['max_ms']:>8.1f} {row['sql_p50_ms']:>8.1f} {row['python_cpu_p50_ms']:>7.1f}"
            f"  {flags}"
        )
    print(
        f"\nFirst image query (loads the index rows): {result['cold_ms']:.0f} ms. "
        f"Seeding took {result['seed_s']:.1f} s."
    )
    print(
        "Load average (1, 5, 15 min): before "
        + ", ".join(f"{v:.2f}" for v in load_before)
        + "; after "
        + ", ".join(f"{v:.2f}" for v in load_after)
    )
    write_report(
        args.out,
        {"machine": machine(load_before, load_after), "target_p95_ms": TARGET_P95_MS, **result},
    )


# --- the child: seed, index, measure ----------------------------------------------------------


def _seed(n: int, rng: random.Random) -> tuple[Any, int]:
    """An annotator with a current group, and n images (bulk inserted, no files)."""
    from django.contrib.auth import get_user_model
    from django.core.management.color import no_style
    from django.db import connection, transaction

    from core.roles import ANNOTATOR, assign_role
    from curation.models import CurrentGroup, Group, GroupMember, Image

    with transaction.atomic():
        user = get_user_model().objects.create(username="bench-annotator")
        user.set_unusable_password()
        user.save()
        assign_role(user, ANNOTATOR)
        for start in range(0, n, BATCH):
            rows = []
            for pk in range(start + 1, min(start + BATCH, n) + 1):
                sha = f"{rng.getrandbits(256):064x}"
                rows.append(
                    Image(
                        id=pk,
                        sha256=sha,
                        md5=f"{rng.getrandbits(128):032x}",
                        width=800,
                        height=600,
                        original_format="JPEG",
                        file=f"images/{sha[:2]}/{sha}.png",
                        thumbnail=f"thumbs/{sha[:2]}/{sha}.webp",
                        phash=f"{rng.getrandbits(64):016x}",
                        source_name=f"bench/{pk:07d}.jpg",
                        created_by=user,
                    )
                )
            Image.objects.bulk_create(rows, batch_size=BATCH)
        group = Group.objects.create(title="Bench group", created_by=user)
        GroupMember.objects.bulk_create(
            GroupMember(group=group, image_id=pk, position=p) for p, pk in enumerate((1, 2, 3))
        )
        CurrentGroup.objects.create(user=user, group=group)
        with connection.cursor() as cursor:
            for statement in connection.ops.sequence_reset_sql(no_style(), [Image, Group]):
                cursor.execute(statement)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    return user, n


def _indexes(n: int, baselines: int, seed: int, data_dir: Path) -> None:
    from benchmarks.search_latency import uniform_vectors
    from ml.search import write_index
    from training.models import EmbeddingIndex, TrainedModel

    ids = [str(pk) for pk in range(1, n + 1)]
    model = TrainedModel.objects.create(
        kind=TrainedModel.Kind.RELSIM,
        name="bench relsim",
        folder=str(data_dir / "checkpoint"),
        is_active=True,
    )
    folder = write_index(data_dir / "indexes" / "relsim", ids, uniform_vectors(n, DIM, seed))
    EmbeddingIndex.objects.create(model=model, folder=str(folder), count=n, dim=DIM)
    for b in range(baselines):
        folder = write_index(
            data_dir / "indexes" / f"baseline-{b}", ids, uniform_vectors(n, DIM, seed + 1 + b)
        )
        EmbeddingIndex.objects.create(baseline=f"bench-{b}", folder=str(folder), count=n, dim=DIM)


def _caption(rng: random.Random) -> str:
    first, second = rng.sample(CAPTION_WORDS, 2)
    return f"A {{{first}}} placed beside a {{{second}}} number {rng.randrange(10**6)}."


def _measure(
    client: Any, urls: list[tuple[str, str, dict[str, Any]]], warmups: int
) -> dict[str, Any]:
    """Times of (method, url, body) requests; the first `warmups` are not counted."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, sql_times, cpu_times, counts = [], [], [], set()
    for n, (method, url, body) in enumerate(urls):
        with CaptureQueriesContext(connection) as captured:
            started, cpu_started = time.perf_counter(), time.process_time()
            if method == "post":
                response = client.post(url, json.dumps(body), content_type="application/json")
            else:
                response = client.get(url)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
        if response.status_code != 200:
            raise RuntimeError(f"{method.upper()} {url} answered {response.status_code}")
        if n >= warmups:
            times.append(elapsed * 1000)
            sql_times.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
            cpu_times.append(cpu * 1000)
            counts.add(len(captured.captured_queries))
    return {
        "url": urls[-1][1],
        "queries": max(counts),
        "p50_ms": _percentile(times, 0.5),
        "p95_ms": _percentile(times, 0.95),
        "max_ms": max(times),
        "sql_p50_ms": _percentile(sql_times, 0.5),
        "python_cpu_p50_ms": _percentile(cpu_times, 0.5),
    }


def _measure_search(n: int, rng: random.Random, requests: int, warmups: int) -> dict[str, Any]:
    """training.search.search() on its own: the index product and top-k of every column, with
    the few queries it makes, but no middleware, view or template."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from curation.models import Image
    from training.search import Query, search

    times, sql_times, cpu_times, counts = [], [], [], set()
    for i in range(warmups + requests):
        image = Image.objects.get(pk=rng.randrange(1, n + 1))
        with CaptureQueriesContext(connection) as captured:
            started, cpu_started = time.perf_counter(), time.process_time()
            search(Query(image=image), k=24)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if i >= warmups:
            times.append(elapsed * 1000)
            sql_times.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
            cpu_times.append(cpu * 1000)
            counts.add(len(captured.captured_queries))
    return {
        "url": "training.search.search(Query(image=...), k=24)",
        "queries": max(counts),
        "p50_ms": _percentile(times, 0.5),
        "p95_ms": _percentile(times, 0.95),
        "max_ms": max(times),
        "sql_p50_ms": _percentile(sql_times, 0.5),
        "python_cpu_p50_ms": _percentile(cpu_times, 0.5),
    }


def _child(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    rng = random.Random(args.seed)
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    user, n = _seed(args.images, rng)
    seed_s = time.perf_counter() - started
    print(f"  migrated and seeded {n:,} images in {seed_s:.1f} s", flush=True)
    started = time.perf_counter()
    _indexes(n, args.baselines, args.seed, Path(settings.DATA_DIR))
    print(f"  wrote the index(es) in {time.perf_counter() - started:.1f} s", flush=True)

    client = Client()
    client.force_login(user)
    started = time.perf_counter()
    response = client.get(f"/search/?image={rng.randrange(1, n + 1)}")
    cold_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.status_code
    total = args.warmups + args.requests

    def image_urls() -> list[tuple[str, str, dict[str, Any]]]:
        return [("get", f"/search/?image={rng.randrange(1, n + 1)}", {}) for _ in range(total)]

    def text_urls() -> list[tuple[str, str, dict[str, Any]]]:
        # A new caption every time: the text tower's cache never answers.
        return [("get", "/search/?" + urlencode({"text": _caption(rng)}), {}) for _ in range(total)]

    def api_urls() -> list[tuple[str, str, dict[str, Any]]]:
        pairs = [[rng.randrange(1, n + 1), rng.randrange(1, n + 1)] for _ in range(1000)]
        return [("post", "/api/relsim-score/", {"pairs": pairs}) for _ in range(total)]

    rows: dict[str, dict[str, Any]] = {}
    for name, urls, target in (
        ("search by image (k=24)", image_urls(), True),
        ("search by image (k=100)", [(m, u + "&k=100", b) for m, u, b in image_urls()], True),
        ("search by caption text (k=24)", text_urls(), False),
        ("relsim-score API, 1000 pairs", api_urls(), False),
    ):
        rows[name] = {**_measure(client, urls, args.warmups), "target": target}
        row = rows[name]
        print(
            f"  {name:<40} p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms",
            flush=True,
        )
    rows["query logic alone, by image (k=24)"] = {
        **_measure_search(n, rng, args.requests, args.warmups),
        "target": False,
    }
    result = {
        "images": n,
        "baselines": args.baselines,
        "database": connection.vendor,
        "database_version": _database_version(connection),
        "seed_s": seed_s,
        "cold_ms": cold_ms,
        "requests": args.requests,
        "warmups": args.warmups,
        "rows": rows,
    }
    args.worker_out.write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=114_000)
    parser.add_argument("--baselines", type=int, default=0, help="baseline indexes beside it")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per row")
    parser.add_argument("--warmups", type=int, default=5)
    parser.add_argument("--database-url", default=DEFAULT_DB, help="dropped and recreated!")
    parser.add_argument("--keep-db", action="store_true", help="leave the database")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_out:
        _child(args)
        return
    if args.images < 10:
        parser.error("--images must be at least 10")
    _parent(args)


if __name__ == "__main__":
    main()
