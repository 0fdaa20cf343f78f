"""A flood of A/B study answers against gunicorn and PostgreSQL on 127.0.0.1: nothing lost,
nothing duplicated, no server error, and answers per second beside a trivial view.

    .venv/bin/python -m benchmarks.vote_flood                      # 50 participants x 200 answers
    .venv/bin/python -m benchmarks.vote_flood --participants 10 --answers 50
    .venv/bin/python -m benchmarks.vote_flood --workers 3 --threads 4   # gthread workers

A fresh database (PostgreSQL `relsim_bench_votes` by default, DROPPED and recreated, dropped
again at the end) and a temporary data directory hold a study with enough A/B trials; then
`gunicorn config.wsgi` serves it with DEBUG off. Each participant is a thread with its own
cookies, as a browser: consent, the instructions, the first trial, then every answer as
study.js sends it (the reply, JSON, says which trial is next). Some answers are sent twice
with a different choice (one after the other, or both at once) and some are preceded by a
reload of the trial page. The trivial view (/healthz/,
no database) is timed with the same client and concurrency before and after the flood.

Afterwards the database must hold exactly one answer per participant and trial, with the
first choice sent. Answers per second count the answer POSTs the server accepted, divided by
the wall time of the answering phase (from when every participant has consented to the last
answer). Writes var/bench/vote_flood.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

from benchmarks.reporting import (
    child_environment,
    images_sharing_file,
    machine,
    write_report,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/relsim_bench_votes"
DEFAULT_OUT = ROOT / "var" / "bench" / "vote_flood.json"
HOST = "127.0.0.1"
CHOICES = ("left", "right", "same")
# Targets: at least half the trivial view's rate, and 300 answers/s on 2 cores.
TARGET_RATIO = 0.5
TARGET_ANSWERS_S = 300.0
# A person needs a second or more per trial; this script answers as fast as the server lets
# it, so the per-participant limit is lifted for the run.
FLOOD_BURST = 1_000_000
METHODS = {
    "relsim:1": {"label": "relsim"},
    "phash": {"label": "perceptual hash"},
    "clip-i": {"label": "CLIP-I"},
}
POSITION = re.compile(rb'data-position="(\d+)"')


# --- the database and the server ---------------------------------------------------------


def _admin(url: str, *statements: str) -> None:
    """Run statements naming the bench database, from the server's maintenance database."""
    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    with psycopg.connect(
        host=parsed.hostname or HOST,
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        for statement in statements:
            conn.execute(sql.SQL(statement).format(sql.Identifier(name)))


def _drop_database(url: str) -> None:
    _admin(url, "DROP DATABASE IF EXISTS {} WITH (FORCE)")


def _environment(args: argparse.Namespace, data_dir: Path) -> dict[str, str]:
    return child_environment(
        args.database_url,
        data_dir / "data",
        # The app's settings with two reference views in front (benchmarks/flood/urls.py).
        DJANGO_SETTINGS_MODULE="benchmarks.flood.settings",
        CELERY_BROKER_URL="",
        ALLOWED_HOSTS=HOST,
        DB_CONN_MAX_AGE=str(args.conn_max_age),
        RELSIM_STUDY_ANSWER_BURST=str(FLOOD_BURST),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _start_server(
    args: argparse.Namespace, env: dict[str, str], port: int, log: Path
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gunicorn", "config.wsgi:application"]
    command += ["--bind", f"{HOST}:{port}", "--workers", str(args.workers)]
    command += ["--worker-class", "gthread" if args.threads > 1 else "sync"]
    command += ["--threads", str(args.threads), "--timeout", "120", "--no-control-socket"]
    command += ["--log-level", "warning", "--error-logfile", "-"]
    # A session of its own: Ctrl-C reaches this script, which then stops the server itself.
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_until_up(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + log.read_text()[-3000:])
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/healthz/")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("gunicorn did not answer in 90 s:\n" + log.read_text()[-3000:])


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# --- the study, built in a child process with Django set up -------------------------------


def _setup(out: Path, answers: int) -> None:
    import io

    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone
    from PIL import Image as PILImage

    from curation.intake import normalise_image
    from curation.models import Image
    from curation.services import image_store
    from evaluation.models import BenchmarkQuery, BenchmarkRun, Retrieval
    from evaluation.study_services import study_create, study_set_open

    call_command("migrate", verbosity=0)
    from django.db import connection

    from benchmarks.flood.urls import SCRATCH_TABLE

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {SCRATCH_TABLE} (id BIGSERIAL PRIMARY KEY, n INTEGER)")
    # Two baselines give two trials per query; a margin over the answers each participant
    # gives, so the least-seen picking has a choice.
    queries = max(120, answers * 3 // 5 + 1)
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64), (200, 80, 40)).save(buffer, "PNG")
    base = image_store(normalised=normalise_image(buffer.getvalue())).image
    # Answering never reads image files: every further row points at the one stored file.
    Image.objects.bulk_create(images_sharing_file(base, range(1, 4 * queries)))
    ids = list(Image.objects.order_by("id").values_list("id", flat=True))
    run = BenchmarkRun.objects.create(
        name="vote flood",
        methods=METHODS,
        params={"k": 1},
        database=ids,
        finished_at=timezone.now(),
    )
    rows = BenchmarkQuery.objects.bulk_create(
        BenchmarkQuery(run=run, image_id=ids[4 * i], position=i) for i in range(queries)
    )
    Retrieval.objects.bulk_create(
        Retrieval(query=row, method=method, hits=[ids[4 * i + k]], scores=[0.9])
        for i, row in enumerate(rows)
        for k, method in enumerate(METHODS, start=1)
    )
    built = study_create(
        name="vote flood",
        benchmark=run,
        reference_method="relsim:1",
        baselines=["phash", "clip-i"],
        trials_per_participant=answers,
        catch_per_participant=0,
    )
    study_set_open(study=built.study, is_open=True)
    out.write_text(
        json.dumps({"slug": built.study.slug, "study_id": built.study.pk, "ab": built.ab_trials})
    )


def _build_study(args: argparse.Namespace, env: dict[str, str], data_dir: Path) -> dict[str, Any]:
    out = data_dir / "study.json"
    command = [sys.executable, "-m", "benchmarks.vote_flood", "--setup-out", str(out)]
    command += ["--answers", str(args.answers)]
    subprocess.run(command, env=env, cwd=ROOT, check=True)
    study: dict[str, Any] = json.loads(out.read_text())
    return study


# --- the client: one cookie jar and connection per participant ----------------------------


@dataclass
class Tally:
    """What every thread saw, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: Counter[tuple[str, int]] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    wrong_next: int = 0

    def record(self, label: str, status: int, expect: tuple[int, ...], ms: float) -> None:
        with self.lock:
            self.statuses[(label, status)] += 1
            if status not in expect:
                self.unexpected[(label, status)] += 1
            self.latencies_ms.setdefault(label, []).append(ms)

    def count(self, labels: tuple[str, ...], statuses: tuple[int, ...]) -> int:
        return sum(
            n
            for (label, status), n in self.statuses.items()
            if label in labels and status in statuses
        )

    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)


class Browser:
    """http.client with a cookie jar. Django marks its cookies Secure once DEBUG is off; a
    browser would drop them over plain HTTP, so the jar keeps them (TLS ends at a proxy in a
    deployment, not here)."""

    def __init__(self, port: int, tally: Tally, cookies: dict[str, str] | None = None) -> None:
        self.port = port
        self.tally = tally
        self.cookies = cookies if cookies is not None else {}
        self.conn = http.client.HTTPConnection(HOST, port, timeout=120)

    def twin(self) -> Browser:
        """A second tab: the same cookies, its own connection."""
        return Browser(self.port, self.tally, self.cookies)

    @property
    def csrf(self) -> str:
        return self.cookies.get("csrftoken", "")

    def request(
        self,
        label: str,
        method: str,
        path: str,
        *,
        data: dict[str, str] | None = None,
        wants_json: bool = False,
        expect: tuple[int, ...] = (200,),
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        headers = {"Host": f"{HOST}:{self.port}", "User-Agent": "relsim-vote-flood"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if data is not None:
            body = urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = f"http://{HOST}:{self.port}"
            headers["X-CSRFToken"] = self.csrf
        if wants_json:
            headers["Accept"] = "application/json"
        # Retried like a person clicking again; re-sending an answer is harmless by design.
        for attempt in range(3):
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                content = response.read()
            except (OSError, http.client.HTTPException):
                with self.tally.lock:
                    self.tally.transport_errors[label] += 1
                self.conn.close()
                if attempt == 2:
                    raise
                time.sleep(0.1)
                continue
            self.tally.record(
                label, response.status, expect, (time.perf_counter() - started) * 1000
            )
            for line in response.msg.get_all("Set-Cookie") or []:
                jar: SimpleCookie = SimpleCookie()
                jar.load(line)
                self.cookies.update({name: morsel.value for name, morsel in jar.items()})
            return response.status, response.msg, content
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def _position(body: bytes) -> int | None:
    found = POSITION.search(body)
    return int(found.group(1)) if found else None


@dataclass
class Flood:
    port: int
    slug: str
    answers: int
    double_rate: float
    reload_rate: float
    seed: int
    tally: Tally
    barrier: threading.Barrier


@dataclass
class Sent:
    """One participant's answers as sent: position -> the choices, in the order sent; both
    at once when concurrent (either may be the first the server sees)."""

    token: str = ""
    choices: dict[int, tuple[str, ...]] = field(default_factory=dict)
    concurrent: set[int] = field(default_factory=set)
    finished_at: float = 0.0
    completed: bool = False


def _consent(browser: Browser, flood: Flood, n: int) -> tuple[str, int | None]:
    pid = f"BENCH{n:05d}"
    entry = f"/study/{flood.slug}/"
    query = urlencode({"PROLIFIC_PID": pid, "STUDY_ID": "VOTEFLOOD", "SESSION_ID": f"S{n:05d}"})
    browser.request("consent page", "GET", f"{entry}?{query}")
    consent = {
        "agree": "yes",
        "csrfmiddlewaretoken": browser.csrf,
        "PROLIFIC_PID": pid,
        "STUDY_ID": "VOTEFLOOD",
        "SESSION_ID": f"S{n:05d}",
        "viewport": "1280x800",
    }
    _, headers, _ = browser.request("consent", "POST", entry, data=consent, expect=(302,))
    found = re.search(r"/study/p/([^/]+)/start/", headers.get("Location", ""))
    if found is None:
        raise RuntimeError(f"consent did not start a session: {headers.get('Location')!r}")
    token = found.group(1)
    browser.request("instructions", "GET", f"/study/p/{token}/start/")
    _, _, body = browser.request("trial page", "GET", f"/study/p/{token}/")
    return token, _position(body)


def _participant(n: int, flood: Flood) -> Sent:
    rng = random.Random(flood.seed * 100_003 + n)
    browser = Browser(flood.port, flood.tally)
    sent = Sent()
    try:
        sent.token, position = _consent(browser, flood, n)
    except BaseException:
        flood.barrier.abort()
        raise
    # Everyone starts answering at once: the answering phase is timed on its own.
    flood.barrier.wait()
    trial_url = f"/study/p/{sent.token}/"
    answer_url = f"/study/p/{sent.token}/answer/"
    doubles = 0
    while position is not None:
        if rng.random() < flood.reload_rate:
            _, _, body = browser.request("reload", "GET", trial_url)
            if _position(body) != position:
                with flood.tally.lock:
                    flood.tally.wrong_next += 1
        first = rng.choice(CHOICES)
        data = {
            "position": str(position),
            "choice": first,
            "response_ms": str(rng.randint(300, 5000)),
            "viewport": "1280x800",
        }
        again = None
        if rng.random() < flood.double_rate:
            second = rng.choice([c for c in CHOICES if c != first])
            again = {**data, "choice": second}
            sent.choices[position] = (first, second)
            doubles += 1
        else:
            sent.choices[position] = (first,)
        tab = None
        if again is not None and doubles % 2 == 0:
            # A double click that reaches two web workers at once.
            sent.concurrent.add(position)
            tab = threading.Thread(target=_send_from_twin, args=(browser, answer_url, again))
            tab.start()
        status, _, body = _send_answer(browser, answer_url, data, label="answer")
        if tab is not None:
            tab.join()
        elif again is not None:
            _send_answer(browser, answer_url, again)
        following = position + 1 if position + 1 < flood.answers else None
        reply = json.loads(body) if status == 200 else {}
        position = reply.get("position")
        if position != following or (position is None and not reply.get("done")):
            with flood.tally.lock:
                flood.tally.wrong_next += 1
    sent.finished_at = time.perf_counter()
    status, _, _ = browser.request("done page", "GET", f"/study/p/{sent.token}/done/")
    sent.completed = status == 200
    browser.close()
    return sent


def _send_answer(
    browser: Browser, url: str, data: dict[str, str], label: str = "answer (again)"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    return browser.request(label, "POST", url, data=data, wants_json=True)


def _send_from_twin(browser: Browser, url: str, data: dict[str, str]) -> None:
    twin = browser.twin()
    try:
        _send_answer(twin, url, data)
    finally:
        twin.close()


def _run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(target, range(count)))


def _trivial(port: int, clients: int, requests: int) -> tuple[float, Tally]:
    """Requests/s of /healthz/ with the same client and the same number of threads."""
    return _reference(port, clients, requests, "GET", "/healthz/")


def _reference(
    port: int,
    clients: int,
    requests: int,
    method: str,
    url: str,
    form: dict[str, str] | None = None,
) -> tuple[float, Tally]:
    """Requests/s of one reference view with the same client and number of threads. A
    `form` is posted as an answer is: with a CSRF cookie and header, asking for JSON."""
    tally = Tally()
    begun: list[float] = []
    barrier = threading.Barrier(clients, action=lambda: begun.append(time.perf_counter()))
    data: dict[str, str] | None = form if form is not None else {} if method == "POST" else None

    def one(_: int) -> float:
        # A secret of the form Django hands out, as a browser would hold it in its cookie.
        cookies = {"csrftoken": secrets.token_hex(16)} if form is not None else None
        browser = Browser(port, tally, cookies)
        barrier.wait()
        for _ in range(requests):
            browser.request(url, method, url, data=data, wants_json=form is not None)
        browser.close()
        return time.perf_counter()

    ends = _run_threads(clients, one)
    return tally.count((url,), (200,)) / (max(ends) - begun[0]), tally


# --- checking the database ----------------------------------------------------------------


def _verify(url: str, study_id: int, sent: list[Sent], answers: int) -> dict[str, int]:
    import psycopg

    parsed = urlparse(url)
    with psycopg.connect(
        host=parsed.hostname or HOST,
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        dbname=parsed.path.lstrip("/"),
    ) as conn:
        rows = conn.execute(
            "SELECT p.token, a.position, an.choice, p.finished_at IS NOT NULL "
            "FROM evaluation_participant p "
            "JOIN evaluation_assignment a ON a.participant_id = p.id "
            "LEFT JOIN evaluation_answer an "
            "  ON an.participant_id = p.id AND an.trial_id = a.trial_id "
            "WHERE p.study_id = %s",
            (study_id,),
        ).fetchall()
        stored, pairs = conn.execute(
            "SELECT count(*), count(DISTINCT (an.participant_id, an.trial_id)) "
            "FROM evaluation_answer an JOIN evaluation_participant p ON p.id = an.participant_id "
            "WHERE p.study_id = %s",
            (study_id,),
        ).fetchone() or (0, 0)
        # An answer to a trial the participant was never given would be a duplicate in
        # disguise: the view must only ever answer the participant's own assignment.
        (stray,) = conn.execute(
            "SELECT count(*) FROM evaluation_answer an WHERE NOT EXISTS ("
            "  SELECT 1 FROM evaluation_assignment a "
            "  WHERE a.participant_id = an.participant_id AND a.trial_id = an.trial_id)"
        ).fetchone() or (0,)
    by_token = {s.token: s for s in sent}
    expected = len(sent) * answers
    answered = wrong_choice = 0
    for token, position, choice, _ in rows:
        if token not in by_token:
            continue
        if choice is None:
            continue
        answered += 1
        mine = by_token[token]
        choices = mine.choices.get(position, ())
        # Sent one after the other, the first must stand; sent at once, either may.
        allowed = choices if position in mine.concurrent else choices[:1]
        if choice not in allowed:
            wrong_choice += 1
    return {
        "expected": expected,
        "stored": int(stored),
        "lost": expected - answered,
        "duplicated": int(stored) - int(pairs) + int(stray),
        "wrong_choice": wrong_choice,
        "participants_not_finished": len({t for t, _, _, f in rows if t in by_token and not f}),
        "assignments": sum(1 for token, *_ in rows if token in by_token),
    }


# --- the run ------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _flood(
    args: argparse.Namespace, port: int, study: dict[str, Any]
) -> tuple[Flood, list[Sent], float]:
    started: list[float] = []
    flood = Flood(
        port=port,
        slug=study["slug"],
        answers=args.answers,
        double_rate=args.double,
        reload_rate=args.reload,
        seed=args.seed,
        tally=Tally(),
        barrier=threading.Barrier(
            args.participants, action=lambda: started.append(time.perf_counter())
        ),
    )
    sent = _run_threads(args.participants, lambda n: _participant(n, flood))
    wall = max(s.finished_at for s in sent) - started[0]
    return flood, sent, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--answers", type=int, default=200, help="answers per participant")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 2) + 1)
    parser.add_argument("--threads", type=int, default=1, help="above 1: gthread workers")
    parser.add_argument("--double", type=float, default=0.10, help="share sent twice")
    parser.add_argument("--reload", type=float, default=0.10, help="share preceded by a reload")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=60,
        help="DB_CONN_MAX_AGE of the server (the app's default, 0, connects per request)",
    )
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--setup-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.setup_out:
        _setup(args.setup_out, args.answers)
        return 0

    load_before = os.getloadavg()
    data_dir = Path(tempfile.mkdtemp(prefix="relsim-votes-"))
    env = _environment(args, data_dir)
    log = data_dir / "gunicorn.log"
    server = None
    print(
        f"{args.participants} participants x {args.answers} answers, {args.double:.0%} sent "
        f"twice, {args.reload:.0%} after a reload; database {args.database_url}"
    )
    try:
        _admin(args.database_url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", "CREATE DATABASE {}")
        setup_started = time.perf_counter()
        study = _build_study(args, env, data_dir)
        took = time.perf_counter() - setup_started
        print(f"Study with {study['ab']} A/B trials built in {took:.1f} s", flush=True)
        port = _free_port()
        server = _start_server(args, env, port, log)
        _wait_until_up(server, port, log)
        # Warm every worker (imports, URL resolver, templates) before anything is timed.
        _trivial(port, args.participants, 10)
        load_start = os.getloadavg()
        trivial_requests = max(20, args.answers)
        trivial_before, trivial_tally = _trivial(port, args.participants, trivial_requests)
        print(f"Trivial view before: {trivial_before:,.0f} req/s", flush=True)
        flood, sent, wall = _flood(args, port, study)
        trivial_after, after_tally = _trivial(port, args.participants, trivial_requests)
        print(f"Trivial view after:  {trivial_after:,.0f} req/s", flush=True)
        # The floor under an answer: a database round trip, then a row committed to disk.
        select_s, select_tally = _reference(
            port, args.participants, trivial_requests, "GET", "/bench/select-one/"
        )
        insert_s, insert_tally = _reference(
            port, args.participants, trivial_requests, "POST", "/bench/insert-one/"
        )
        bare_s, bare_tally = _reference(
            port,
            args.participants,
            trivial_requests,
            "POST",
            "/bench/bare-answer/",
            form={"position": "7", "choice": "left", "response_ms": "900", "viewport": "1280x800"},
        )
        print(
            f"One SELECT 1: {select_s:,.0f} req/s; one committed INSERT: {insert_s:,.0f} req/s; "
            f"a bare answer: {bare_s:,.0f} req/s"
        )
        counts = _verify(args.database_url, study["study_id"], sent, args.answers)
    finally:
        if server is not None:
            _stop_server(server)
        server_log = log.read_text(errors="replace") if log.exists() else ""
        if "Traceback" in server_log:
            # Kept for reading: the data directory goes, the server's errors stay.
            kept = args.out.with_suffix(".server.log")
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(server_log, encoding="utf-8")
            print(f"The server logged errors: {kept}", flush=True)
        _drop_database(args.database_url)
        shutil.rmtree(data_dir, ignore_errors=True)
    load_after = os.getloadavg()

    tally = flood.tally
    references = (trivial_tally, after_tally, select_tally, insert_tally, bare_tally)
    accepted = tally.count(("answer", "answer (again)"), (200,))
    unique = args.participants * args.answers
    answers_s = accepted / wall
    trivial_s = statistics.mean([trivial_before, trivial_after])
    ratio = answers_s / trivial_s
    server_errors = sum(t.server_errors() for t in (tally, *references))
    logged_errors = server_log.count("Internal Server Error") + server_log.count("Traceback")
    transport = sum(tally.transport_errors.values())
    latencies = tally.latencies_ms.get("answer", [])
    checks = {
        "0 lost": counts["lost"] == 0,
        "0 duplicated": counts["duplicated"] == 0,
        "first choice stands": counts["wrong_choice"] == 0,
        "0 server errors": server_errors == 0 and logged_errors == 0,
        "every answer accepted, next trial right": not tally.unexpected
        and tally.wrong_next == 0
        and transport == 0
        and counts["participants_not_finished"] == 0,
        "every reference request answered 200": not any(t.unexpected for t in references),
        f"answers/s >= {TARGET_RATIO:.0%} of the trivial view": ratio >= TARGET_RATIO,
        f"answers/s >= {TARGET_ANSWERS_S:.0f}": answers_s >= TARGET_ANSWERS_S,
    }

    cores = os.cpu_count()
    worker_kind = f"gthread x {args.threads} threads" if args.threads > 1 else "sync"
    print(
        f"\nMachine: {cores} cores, {platform.platform()}; load average (1, 5, 15 min) "
        f"before {_load(load_before)}, at the first timed request {_load(load_start)}, "
        f"after {_load(load_after)}"
    )
    print(
        f"Server: gunicorn, {args.workers} {worker_kind} workers, DEBUG off, "
        f"DB_CONN_MAX_AGE={args.conn_max_age}, PostgreSQL on {HOST}; "
        f"client: {args.participants} threads on the same machine"
    )
    print(
        f"Rate limit lifted for the flood: RELSIM_STUDY_ANSWER_BURST={FLOOD_BURST} in the "
        "server's environment (a script answers faster than a person)"
    )
    print(
        f"\nTrivial view /healthz/: {trivial_s:,.0f} req/s "
        f"(before {trivial_before:,.0f}, after {trivial_after:,.0f}; "
        f"{args.participants} clients x {trivial_requests} requests each time)"
    )
    print(
        f"Answers: {answers_s:,.0f} accepted answer POSTs/s ({accepted:,} in {wall:.1f} s; "
        f"{unique / wall:,.0f}/s counting each stored answer once)"
    )
    print(f"Ratio: {ratio:.2f} of the trivial view")
    print(
        f"References, same clients: a view running SELECT 1 {select_s:,.0f} req/s "
        f"({select_s / trivial_s:.2f} of the trivial view); a view committing one INSERT "
        f"{insert_s:,.0f} req/s ({insert_s / trivial_s:.2f}); a bare answer (a CSRF-checked "
        f"form post committing one row, replying JSON) {bare_s:,.0f} req/s "
        f"({bare_s / trivial_s:.2f}). An answer also reads the participant and says which trial "
        "is next, in the same statement on PostgreSQL; the flood also reloads trial pages."
    )
    print(
        f"Answer POST latency: p50 {_percentile(latencies, 0.5):.0f} ms, "
        f"p95 {_percentile(latencies, 0.95):.0f} ms, max {max(latencies, default=0):.0f} ms"
    )
    print(
        f"\nStored {counts['stored']:,} answers for {counts['expected']:,} expected: "
        f"lost {counts['lost']}, duplicated {counts['duplicated']}, wrong choice kept "
        f"{counts['wrong_choice']}; server errors {server_errors} (5xx), "
        f"{logged_errors} in the server log; transport errors {transport}; unexpected "
        f"answers {sum(tally.unexpected.values())}; wrong next trial {tally.wrong_next}"
    )
    print("Requests: " + ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(tally.statuses.items())))
    for (label, status), n in sorted(tally.unexpected.items()):
        print(f"  unexpected: {label} answered {status} x {n}")
    print()
    for name, ok in checks.items():
        print(f"{_verdict(ok)}  {name}")

    report = {
        "machine": machine(load_before, load_after, load_average_at_start=load_start),
        "server": {
            "workers": args.workers,
            "worker_class": "gthread" if args.threads > 1 else "sync",
            "threads": args.threads,
            "db_conn_max_age": args.conn_max_age,
            "answer_burst": FLOOD_BURST,
        },
        "participants": args.participants,
        "answers_per_participant": args.answers,
        "double_rate": args.double,
        "reload_rate": args.reload,
        "trivial_req_s": {"before": trivial_before, "after": trivial_after, "mean": trivial_s},
        "reference_req_s": {
            "select_one": select_s,
            "insert_one": insert_s,
            "bare_answer": bare_s,
        },
        "answers_s": answers_s,
        "stored_answers_s": unique / wall,
        "accepted_answer_posts": accepted,
        "answering_wall_s": wall,
        "ratio": ratio,
        "answer_latency_ms": {
            "p50": _percentile(latencies, 0.5),
            "p95": _percentile(latencies, 0.95),
            "max": max(latencies, default=0),
        },
        "database": counts,
        "server_errors": server_errors,
        "server_log_errors": logged_errors,
        "transport_errors": dict(tally.transport_errors),
        "wrong_next_trial": tally.wrong_next,
        "statuses": {f"{k} {s}": n for (k, s), n in sorted(tally.statuses.items())},
        "checks": {name: _verdict(ok) for name, ok in checks.items()},
    }
    print()
    write_report(args.out, report)
    correct = all(ok for name, ok in checks.items() if "answers/s" not in name)
    return 0 if correct else 1


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
