"""Server time and SQL query counts of the annotators' and reviewers' pages, on a small
pool and on a large seeded one; prints a table and writes var/bench/curation_pages.json.

    .venv/bin/python -m benchmarks.curation_pages             # 1k and 100k images, 30 requests
    .venv/bin/python -m benchmarks.curation_pages --quick     # 1k and 10k images, 10 requests
    .venv/bin/python -m benchmarks.curation_pages --images 300000 --explain

Each pool size gets a fresh database (by default PostgreSQL `relsim_bench` on 127.0.0.1:5432,
user postgres; `--database-url` names another one, which is DROPPED and recreated, or an
SQLite file, which is deleted) and a temporary data directory. Every size runs in its own
process, so settings and in-process caches never leak from one size to the next.

Times are measured around Django's test client (middleware, view, SQL, template), with
DEBUG off, after a few warm-up requests. A page is flagged when its query count differs
between the small and the large pool, or when its p95 is over the target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

# BLAS reads its thread count once, at import; the find-similar panel multiplies matrices.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "2")

from benchmarks.reporting import child_environment, machine, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/relsim_bench"
DEFAULT_OUT = ROOT / "var" / "bench" / "curation_pages.json"
SMALL = 1_000
TARGET_P95_MS = 119.0
SLOWEST_KEPT = 3


# --- the parent: databases, one child process per size, the table ------------------------


def _recreate_database(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = parsed.path[1:] if parsed.path.startswith("//") else parsed.path
        if path and path != ":memory:":
            Path(path).unlink(missing_ok=True)
        return
    import psycopg
    from psycopg import sql

    name = parsed.path.lstrip("/")
    with psycopg.connect(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        _recreate_database(url)  # deletes the file
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        name = parsed.path.lstrip("/")
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def measure_in_child(
    module: str,
    worker_args: list[str],
    *,
    database_url: str,
    keep_db: bool,
    prefix: str,
    **settings: str,
) -> dict[str, Any]:
    """A fresh database and data folder, then the module's measuring half in a child with
    Django set up (`--worker-out FILE` plus `worker_args`), whose JSON result comes back; the
    database is dropped afterwards unless kept, the folder always."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    out = data_dir / "result.json"
    try:
        _recreate_database(database_url)
        env = child_environment(database_url, data_dir / "data", **settings)
        command = [sys.executable, "-m", module, "--worker-out", str(out), *worker_args]
        subprocess.run(command, env=env, cwd=ROOT, check=True)
        result: dict[str, Any] = json.loads(out.read_text())
        return result
    finally:
        if not keep_db:
            _drop_database(database_url)
        shutil.rmtree(data_dir, ignore_errors=True)


def _run_size(size: int, args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    _recreate_database(args.database_url)
    out = data_dir / f"result-{size}.json"
    env = child_environment(args.database_url, data_dir / f"data-{size}")
    command = [
        sys.executable,
        "-m",
        "benchmarks.curation_pages",
        "--worker-size",
        str(size),
        "--worker-out",
        str(out),
        "--requests",
        str(args.requests),
        "--warmups",
        str(args.warmups),
        "--seed",
        str(args.seed),
    ]
    if args.explain:
        command.append("--explain")
    subprocess.run(command, env=env, cwd=ROOT, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _flags(small: dict[str, Any] | None, large: dict[str, Any]) -> list[str]:
    flags = []
    if small is not None and small["queries"] != large["queries"]:
        flags.append("queries grow")
    if large["p95_ms"] > TARGET_P95_MS:
        flags.append(f"p95 > {TARGET_P95_MS:.0f} ms")
    return flags


def _table(small: dict[str, Any], large: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, figures in large["pages"].items():
        before = small["pages"].get(name)
        rows.append(
            {
                "page": name,
                "url": figures["url"],
                "queries_small": before["queries"] if before else None,
                "queries_large": figures["queries"],
                "p50_ms": figures["p50_ms"],
                "p95_ms": figures["p95_ms"],
                "sql_p50_ms": figures["sql_p50_ms"],
                "python_cpu_p50_ms": figures["python_cpu_p50_ms"],
                "p50_ms_small": before["p50_ms"] if before else None,
                "flags": _flags(before, figures),
            }
        )
    return rows


def _print_table(rows: list[dict[str, Any]], small_n: int, large_n: int) -> None:
    head = (
        f"{'page':<34} {'q@' + _short(small_n):>7} {'q@' + _short(large_n):>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'SQL p50':>8} {'py CPU':>7}  flags"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        small = "-" if row["queries_small"] is None else str(row["queries_small"])
        print(
            f"{row['page']:<34} {small:>7} {row['queries_large']:>8} "
            f"{row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {row['sql_p50_ms']:>8.1f} "
            f"{row['python_cpu_p50_ms']:>7.1f}  {', '.join(row['flags'])}"
        )


def _short(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _print_slowest(large: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    flagged = [row["page"] for row in rows if row["flags"]]
    if not flagged:
        return
    print("\nSlowest SQL of each flagged page (last request, large pool):")
    for name in flagged:
        print(f"  {name}:")
        for query in large["pages"][name]["slowest_sql"]:
            print(f"    {query['ms']:7.1f} ms  {query['sql'][:160]}")


def _parent(args: argparse.Namespace) -> None:
    large_n = args.images
    sizes = [SMALL, large_n] if large_n != SMALL else [SMALL]
    print(
        f"Pool sizes {', '.join(f'{n:,}' for n in sizes)}; {args.requests} requests per page "
        f"after {args.warmups} warm-ups; database {args.database_url}"
    )
    print(f"CPUs: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} (1 min)")
    data_dir = Path(tempfile.mkdtemp(prefix="relsim-bench-"))
    load_before = os.getloadavg()
    results = []
    try:
        for size in sizes:
            print(f"\n== {size:,} images ==", flush=True)
            results.append(_run_size(size, args, data_dir))
    finally:
        if not args.keep_db:
            _drop_database(args.database_url)
        shutil.rmtree(data_dir, ignore_errors=True)
    small, large = results[0], results[-1]
    rows = _table(small, large)
    print(
        f"\nQuery counts at {small['images']:,} and {large['images']:,} images; times at "
        f"{large['images']:,} (target p95 <= {TARGET_P95_MS:.0f} ms)\n"
    )
    _print_table(rows, small["images"], large["images"])
    print(
        "(SQL p50: time in SQL as the app sees it, round trips included; py CPU: the Django "
        "process's CPU time, which waiting for a busy core does not inflate)"
    )
    _print_slowest(large, rows)
    for result in results:
        print(
            f"\nSeeding {result['images']:,} images took {result['seed_s']:.1f} s: {result['rows']}"
        )
    print()
    write_report(
        args.out,
        {
            "machine": machine(load_before, os.getloadavg()),
            "requests": args.requests,
            "warmups": args.warmups,
            "target_p95_ms": TARGET_P95_MS,
            "table": rows,
            "runs": results,
        },
    )


# --- the child: one pool size, Django set up against its own database ---------------------


@dataclass(frozen=True)
class Page:
    name: str
    role: str  # "annotator", "reviewer" or "admin"
    url: str
    before_each: Callable[[], None] | None = None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _explain(sql_text: str) -> list[str]:
    from django.db import connection

    if not sql_text.lstrip().upper().startswith("SELECT"):
        return []
    prefix = (
        "EXPLAIN (ANALYZE, BUFFERS) "
        if connection.vendor == "postgresql"
        else "EXPLAIN QUERY PLAN "
    )
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql_text)
        return [" | ".join(str(part) for part in row) for row in cursor.fetchall()]


def _measure(page: Page, client: Any, requests: int, warmups: int, explain: bool) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times: list[float] = []
    sql_times: list[float] = []
    cpu_times: list[float] = []
    counts: set[int] = set()
    last: list[dict[str, str]] = []
    for n in range(warmups + requests):
        if page.before_each is not None:
            page.before_each()
        with CaptureQueriesContext(connection) as captured:
            started, cpu_started = time.perf_counter(), time.process_time()
            response = client.get(page.url)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
        if response.status_code != 200:
            raise RuntimeError(
                f"{page.name}: GET {page.url} answered {response.status_code}: "
                f"{response.content[:300]!r}"
            )
        if n >= warmups:
            times.append(elapsed * 1000)
            sql_times.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
            cpu_times.append(cpu * 1000)
            counts.add(len(captured.captured_queries))
            last = captured.captured_queries
    slowest = sorted(last, key=lambda q: float(q["time"]), reverse=True)[:SLOWEST_KEPT]
    figures: dict[str, Any] = {
        "url": page.url,
        "queries": max(counts),
        "queries_seen": sorted(counts),
        "p50_ms": _percentile(times, 0.5),
        "p95_ms": _percentile(times, 0.95),
        "max_ms": max(times),
        "sql_p50_ms": _percentile(sql_times, 0.5),
        "python_cpu_p50_ms": _percentile(cpu_times, 0.5),
        "slowest_sql": [{"ms": float(q["time"]) * 1000, "sql": q["sql"]} for q in slowest],
    }
    if explain and figures["p95_ms"] > TARGET_P95_MS:
        figures["plans"] = [_explain(q["sql"]) for q in slowest]
    return figures


def _pages(seeded: Any) -> list[Page]:
    from django.conf import settings

    from captions.models import Caption
    from curation.models import Image, InterestLabel, LabelLease
    from curation.similarity import PerceptualHashSimilarity

    size = settings.RELSIM_POOL_PAGE_SIZE
    oldest = list(Image.objects.order_by("id").values_list("id", flat=True)[: 2 * size + 1])
    # The last page of "unlabelled": the cursor sits on the page-size-th oldest unlabelled
    # image, so the page must look through every older (labelled) image to finish.
    unlabelled = Image.objects.exclude(id__in=InterestLabel.objects.values("image_id"))
    last_unlabelled = list(unlabelled.order_by("id").values_list("id", flat=True)[:size])
    scored = Image.objects.filter(filter_score__isnull=False).order_by("filter_score", "id")
    low_scores = list(scored.values_list("filter_score", "id")[: 2 * size + 1])
    deep_score = low_scores[-1]
    annotator_id = seeded.annotator_ids[0]
    group = seeded.showcase_group_id

    def release_leases() -> None:
        LabelLease.objects.filter(annotator_id=annotator_id).delete()

    def forget_vectors() -> None:
        PerceptualHashSimilarity._cache = None

    draft = Caption.objects.filter(status=Caption.Status.DRAFT).order_by("created_at", "id")[0]
    return [
        Page("pool, first page", "annotator", "/pool/"),
        Page("pool, deep page (?after=)", "annotator", f"/pool/?after={oldest[2 * size]}"),
        Page("pool, unlabelled, first page", "annotator", "/pool/?label=unlabelled"),
        Page(
            "pool, unlabelled, last page",
            "annotator",
            f"/pool/?label=unlabelled&after={last_unlabelled[-1]}",
        ),
        Page(
            "pool, score sort, deep page",
            "annotator",
            f"/pool/?sort=score-high&after={deep_score[0]!r}:{deep_score[1]}",
        ),
        Page("labelling queue (new lease)", "annotator", "/label/", release_leases),
        Page("group page", "annotator", f"/groups/{group}/"),
        Page("find similar (cold)", "annotator", f"/groups/{group}/similar/", forget_vectors),
        Page("find similar (warm)", "annotator", f"/groups/{group}/similar/"),
        Page("image detail", "annotator", f"/images/{seeded.showcase_image_id}/"),
        Page("review queue", "reviewer", "/review/"),
        Page("review detail", "reviewer", f"/review/{draft.pk}/"),
        # Further pages the same people open all day.
        Page("home (dataset stats)", "annotator", "/"),
        Page("group list", "annotator", "/groups/"),
        Page("caption editor (group)", "annotator", f"/groups/{group}/caption/"),
        Page("label agreement (kappa, disagreements)", "annotator", "/label/agreement/"),
        Page("captions returned to me", "annotator", "/captions/returned/"),
        # What an admin reads after an import: the report of a full-size run, and the list.
        Page("import report (job page)", "admin", f"/jobs/{seeded.import_job_id}/"),
        Page("imports (20 recent, with reports)", "admin", "/imports/"),
    ]


def _child(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from benchmarks.curation_seed import seed_pool

    size = args.worker_size
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"  migrated in {time.perf_counter() - started:.1f} s", flush=True)
    seeded = seed_pool(size, seed=args.seed, progress=lambda line: print(line, flush=True))
    print(f"  seeded {size:,} images in {seeded.seconds:.1f} s", flush=True)

    users = get_user_model().objects
    clients = {"annotator": Client(), "reviewer": Client(), "admin": Client()}
    clients["annotator"].force_login(users.get(pk=seeded.annotator_ids[0]))
    clients["reviewer"].force_login(users.get(pk=seeded.reviewer_id))
    clients["admin"].force_login(users.get(pk=seeded.admin_id))

    pages = {}
    for page in _pages(seeded):
        figures = _measure(page, clients[page.role], args.requests, args.warmups, args.explain)
        pages[page.name] = figures
        print(
            f"  {page.name:<34} {figures['queries']:>3} queries  p50 {figures['p50_ms']:7.1f} ms"
            f"  p95 {figures['p95_ms']:7.1f} ms  SQL p50 {figures['sql_p50_ms']:6.1f} ms",
            flush=True,
        )
    result = {
        "images": size,
        "database": connection.vendor,
        "database_version": _database_version(connection),
        "seed_s": seeded.seconds,
        "rows": seeded.rows,
        "pages": pages,
    }
    args.worker_out.write_text(json.dumps(result, indent=2))


def _database_version(connection: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT version()"
            if connection.vendor == "postgresql"
            else "SELECT 'SQLite ' || sqlite_version()"
        )
        return str(cursor.fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="the large pool's size")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page")
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1k and 10k images, 10 requests")
    parser.add_argument("--database-url", default=DEFAULT_DB, help="dropped and recreated!")
    parser.add_argument("--keep-db", action="store_true", help="leave the last database")
    parser.add_argument("--explain", action="store_true", help="plans of slow pages' SQL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--worker-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_size:
        _child(args)
        return
    if args.quick:
        args.images, args.requests = 10_000, 10
    if args.images < SMALL:
        parser.error(f"--images must be at least {SMALL}")
    _parent(args)


if __name__ == "__main__":
    main()
