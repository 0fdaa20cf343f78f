"""Every URL pattern x every role x GET and POST -> the expected answer.

RULES is checked against the URL configuration itself (named patterns or not, through every
include; the admin site has its own rules), so a new pattern without a row fails here. A row
gives an example URL that must reach that very pattern, the POST body a real form would send,
and the answer each role gets for GET and for POST.

To add a pattern: add a row keyed by its route as `resolve()` reports it, with placeholders
from `_values` in the URL and the data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils import timezone

from captions.models import Caption
from captions.services import caption_create
from core.roles import assign_role
from curation.intake import normalise_image
from curation.models import Image
from curation.services import group_create, image_store
from evaluation.models import (
    Assignment,
    BenchmarkRun,
    JudgeRun,
    Participant,
    Study,
    StudyText,
    Trial,
)
from training.models import Job, TrainedModel

pytestmark = pytest.mark.both_databases

ROLES = ("anonymous", "annotator", "reviewer", "admin")

# An answer is a status code, or LOGIN for a redirect to the login page. A 302 in a row means
# a redirect anywhere else (the action went through).
LOGIN = "login"
Answer = int | str
Answers = tuple[Answer, Answer, Answer, Answer]  # in ROLES order

# Who gets what, for the three levels of access (core.access).
SIGNED_IN: Answers = (LOGIN, 200, 200, 200)
ANNOTATE: Answers = (LOGIN, 200, 200, 200)
ANNOTATE_ACT: Answers = (LOGIN, 302, 302, 302)
REVIEW: Answers = (LOGIN, 403, 200, 200)
REVIEW_ACT: Answers = (LOGIN, 403, 302, 302)
ADMIN: Answers = (LOGIN, 403, 403, 200)
ADMIN_ACT: Answers = (LOGIN, 403, 403, 302)
# The method check runs before the login check, for everyone.
NOT_ALLOWED: Answers = (405, 405, 405, 405)
# Open to anyone who holds the link.
OPEN: Answers = (200, 200, 200, 200)


@dataclass(frozen=True)
class Rule:
    url: str
    get: Answers
    post: Answers
    data: dict[str, str] = field(default_factory=dict)


# route -> example URL, answers to GET, answers to POST, POST body.
# Placeholders: {image} {other_image} {group} {caption} {job} {failed_job} {running_job}
# {media} {order} {model} {study} {trial} {benchmark} {judge} {batch}.
# fmt: off
RULES: dict[str, Rule] = {
    "": Rule("/", SIGNED_IN, SIGNED_IN),
    # Django's own sign-in pages: open to everyone.
    "login/": Rule("/login/", (200, 200, 200, 200), (200, 200, 200, 200)),
    "logout/": Rule("/logout/", NOT_ALLOWED, (200, 200, 200, 200)),
    # The liveness check: open to everyone, no database.
    "healthz/": Rule("/healthz/", (200, 200, 200, 200), NOT_ALLOWED),
    "media/<path:path>": Rule("/media/{media}", SIGNED_IN, NOT_ALLOWED),
    # curation
    "pool/": Rule("/pool/", ANNOTATE, NOT_ALLOWED),
    "images/<int:image_id>/": Rule("/images/{image}/", ANNOTATE, NOT_ALLOWED),
    "images/<int:image_id>/label/": Rule(
        "/images/{image}/label/", NOT_ALLOWED, ANNOTATE_ACT, {"interesting": "yes"}),
    "label/": Rule("/label/", ANNOTATE, NOT_ALLOWED),
    "label/answer/": Rule(
        "/label/answer/", NOT_ALLOWED, ANNOTATE_ACT, {"image": "{other_image}", "answer": "no"}),
    "label/undo/": Rule("/label/undo/", NOT_ALLOWED, ANNOTATE_ACT),
    "label/agreement/": Rule("/label/agreement/", ANNOTATE, NOT_ALLOWED),
    "groups/": Rule("/groups/", ANNOTATE, NOT_ALLOWED),
    "groups/new/": Rule(
        "/groups/new/", NOT_ALLOWED, ANNOTATE_ACT, {"title": "new", "split": "train"}),
    "groups/<int:group_id>/": Rule("/groups/{group}/", ANNOTATE, NOT_ALLOWED),
    "groups/<int:group_id>/edit/": Rule(
        "/groups/{group}/edit/", NOT_ALLOWED, ANNOTATE_ACT, {"title": "t", "split": "test"}),
    "groups/<int:group_id>/state/": Rule(
        "/groups/{group}/state/", NOT_ALLOWED, ANNOTATE_ACT, {"state": "ready"}),
    "groups/<int:group_id>/add/": Rule(
        "/groups/{group}/add/", NOT_ALLOWED, ANNOTATE_ACT, {"images": "{other_image}"}),
    "groups/<int:group_id>/remove/<int:image_id>/": Rule(
        "/groups/{group}/remove/{image}/", NOT_ALLOWED, ANNOTATE_ACT),
    "groups/<int:group_id>/order/": Rule(
        "/groups/{group}/order/", NOT_ALLOWED, ANNOTATE_ACT, {"order": "{order}"}),
    "groups/<int:group_id>/negative/<int:image_id>/": Rule(
        "/groups/{group}/negative/{other_image}/", NOT_ALLOWED, ANNOTATE_ACT, {"negative": "1"}),
    "groups/<int:group_id>/similar/": Rule("/groups/{group}/similar/", ANNOTATE, NOT_ALLOWED),
    "groups/<int:group_id>/current/": Rule(
        "/groups/{group}/current/", NOT_ALLOWED, ANNOTATE_ACT),
    # "Add from the pool": makes the group current, then shows the pool.
    "groups/<int:group_id>/pool/": Rule("/groups/{group}/pool/", NOT_ALLOWED, ANNOTATE_ACT),
    # captions
    "groups/<int:group_id>/caption/": Rule("/groups/{group}/caption/", ANNOTATE, NOT_ALLOWED),
    "images/<int:image_id>/caption/": Rule("/images/{image}/caption/", ANNOTATE, NOT_ALLOWED),
    "captions/lint/": Rule("/captions/lint/", NOT_ALLOWED, ANNOTATE, {"text": "A {{Object}}."}),
    "captions/returned/": Rule("/captions/returned/", ANNOTATE, NOT_ALLOWED),
    "captions/new/": Rule(
        "/captions/new/", NOT_ALLOWED, ANNOTATE_ACT,
        {"text": "A {{Object}}.", "image": "{other_image}"}),
    "captions/<int:caption_id>/save/": Rule(
        "/captions/{caption}/save/", NOT_ALLOWED, ANNOTATE_ACT,
        {"text": "Two {{Object}}s.", "version": "1"}),
    "captions/<int:caption_id>/presence/": Rule(
        "/captions/{caption}/presence/", NOT_ALLOWED, ANNOTATE),
    # drafting batches and their audits: reviewers read them (and judge the sample through
    # the review pages); admins draw the sample and decide. {batch} has drafts, no sample:
    # an admin's accept or send back is refused with a message, a redirect either way.
    "captions/batches/": Rule("/captions/batches/", REVIEW, NOT_ALLOWED),
    "captions/batches/<int:job_id>/": Rule("/captions/batches/{batch}/", REVIEW, NOT_ALLOWED),
    "captions/batches/<int:job_id>/sample/": Rule(
        "/captions/batches/{batch}/sample/", NOT_ALLOWED, ADMIN_ACT),
    "captions/batches/<int:job_id>/accept/": Rule(
        "/captions/batches/{batch}/accept/", NOT_ALLOWED, ADMIN_ACT),
    "captions/batches/<int:job_id>/send-back/": Rule(
        "/captions/batches/{batch}/send-back/", NOT_ALLOWED, ADMIN_ACT, {"comment": "vague"}),
    "review/": Rule("/review/", REVIEW, NOT_ALLOWED),
    "review/bulk/": Rule("/review/bulk/", NOT_ALLOWED, REVIEW, {"captions": "{caption}"}),
    "review/<int:caption_id>/": Rule("/review/{caption}/", REVIEW, NOT_ALLOWED),
    "review/<int:caption_id>/approve/": Rule(
        "/review/{caption}/approve/", NOT_ALLOWED, REVIEW_ACT, {"version": "1"}),
    "review/<int:caption_id>/reject/": Rule(
        "/review/{caption}/reject/", NOT_ALLOWED, REVIEW_ACT,
        {"version": "1", "reason": "too-vague"}),
    # training
    "export/": Rule("/export/", ADMIN, ADMIN_ACT, {"splits": "train"}),
    # No file or path here, so an admin's POST gets the form back with its errors.
    "imports/": Rule("/imports/", ADMIN, ADMIN),
    "jobs/<int:job_id>/": Rule("/jobs/{job}/", ADMIN, NOT_ALLOWED),
    "jobs/": Rule("/jobs/", ADMIN, NOT_ALLOWED),
    # Without ?a=&b= the comparison page offers a form to pick the two jobs.
    "jobs/compare/": Rule("/jobs/compare/", ADMIN, NOT_ALLOWED),
    "jobs/<int:job_id>/metrics.json": Rule("/jobs/{job}/metrics.json", ADMIN, NOT_ALLOWED),
    "jobs/<int:job_id>/retry/": Rule("/jobs/{failed_job}/retry/", NOT_ALLOWED, ADMIN_ACT),
    "jobs/<int:job_id>/cancel/": Rule("/jobs/{running_job}/cancel/", NOT_ALLOWED, ADMIN_ACT),
    "exports/<int:job_id>/download/": Rule("/exports/{job}/download/", ADMIN, NOT_ALLOWED),
    # models: admins only
    "models/": Rule("/models/", ADMIN, NOT_ALLOWED),
    # No path here, so an admin's POST gets the models page back with the form's errors.
    "models/import/": Rule("/models/import/", NOT_ALLOWED, ADMIN),
    # No worker takes the gpu queue here, so an admin's POST gets the form back saying so.
    "models/train-relsim/": Rule("/models/train-relsim/", ADMIN, ADMIN),
    # No baseline named, so an admin is sent back to the models page saying so.
    "models/baseline-index/": Rule("/models/baseline-index/", NOT_ALLOWED, ADMIN_ACT),
    # Same for the filter job's form.
    "models/filter/": Rule("/models/filter/", ADMIN, ADMIN),
    # {model} is a relsim model: an admin is sent back to the filter page saying so.
    "models/filter/<int:model_id>/activate/": Rule(
        "/models/filter/{model}/activate/", NOT_ALLOWED, ADMIN_ACT),
    # Same for the captioner's forms (a POST without "form" is the training form).
    "models/captioner/": Rule("/models/captioner/", ADMIN, ADMIN),
    # {model} is a relsim model: an admin is sent back to the captioner page saying so.
    "models/captioner/<int:model_id>/activate/": Rule(
        "/models/captioner/{model}/activate/", NOT_ALLOWED, ADMIN_ACT),
    "models/<int:model_id>/activate/": Rule(
        "/models/{model}/activate/", NOT_ALLOWED, ADMIN_ACT),
    # Refused (the folder is missing) or started, an admin is sent on: a redirect either way.
    "models/<int:model_id>/embed/": Rule("/models/{model}/embed/", NOT_ALLOWED, ADMIN_ACT),
    # search: a POST without a file gets the page back with the form's error (400).
    "search/": Rule("/search/", ANNOTATE, (LOGIN, 400, 400, 400)),
    # Without ?a=&b= (GET) or a JSON body (POST) the API answers a 400 JSON error.
    "api/relsim-score/": Rule(
        "/api/relsim-score/", (LOGIN, 400, 400, 400), (LOGIN, 400, 400, 400)),
    # evaluation: studies (admins)
    "evaluation/": Rule("/evaluation/", ADMIN, NOT_ALLOWED),
    # An empty form: an admin gets it back with its errors.
    "evaluation/studies/new/": Rule("/evaluation/studies/new/", ADMIN, (LOGIN, 403, 403, 400)),
    "evaluation/studies/<int:study_id>/": Rule("/evaluation/studies/{study}/", ADMIN, NOT_ALLOWED),
    "evaluation/studies/<int:study_id>/open/": Rule(
        "/evaluation/studies/{study}/open/", NOT_ALLOWED, ADMIN_ACT, {"open": "0"}),
    "evaluation/studies/<int:study_id>/text/": Rule(
        "/evaluation/studies/{study}/text/", NOT_ALLOWED, ADMIN_ACT,
        {"consent": "c", "instructions": "i"}),
    "evaluation/studies/<int:study_id>/preview/": Rule(
        "/evaluation/studies/{study}/preview/", ADMIN, NOT_ALLOWED),
    "evaluation/studies/<int:study_id>/preview/<int:trial_id>/<str:slot>.png": Rule(
        "/evaluation/studies/{study}/preview/{trial}/left.png", ADMIN, NOT_ALLOWED),
    "evaluation/participants/<int:participant_id>/exclude/": Rule(
        "/evaluation/participants/{participant}/exclude/", NOT_ALLOWED, ADMIN_ACT,
        {"excluded": "1"}),
    "evaluation/participants/<int:participant_id>/delete/": Rule(
        "/evaluation/participants/{participant}/delete/", NOT_ALLOWED, ADMIN_ACT),
    # evaluation: the participant's pages. No account: the study link and the participant's
    # token are what open them, for whoever holds them (see PARTICIPANT below).
    "study/<str:slug>/": Rule("/study/{slug}/", OPEN, (302, 302, 302, 302), {"agree": "yes"}),
    "study/p/<str:token>/start/": Rule("/study/p/{token}/start/", OPEN, NOT_ALLOWED),
    "study/p/<str:token>/": Rule("/study/p/{token}/", OPEN, NOT_ALLOWED),
    "study/p/<str:token>/answer/": Rule(
        "/study/p/{token}/answer/", NOT_ALLOWED, (302, 302, 302, 302),
        {"position": "0", "choice": "left"}),
    # Not finished: sent back to the trials.
    "study/p/<str:token>/done/": Rule("/study/p/{token}/done/", (302, 302, 302, 302), NOT_ALLOWED),
    "study/p/<str:token>/img/<int:position>/<str:slot>.png": Rule(
        "/study/p/{token}/img/0/query.png", OPEN, NOT_ALLOWED),
    # evaluation: study results
    "evaluation/studies/<int:study_id>/results/": Rule(
        "/evaluation/studies/{study}/results/", ADMIN, NOT_ALLOWED),
    "evaluation/studies/<int:study_id>/results.png": Rule(
        "/evaluation/studies/{study}/results.png", ADMIN, NOT_ALLOWED),
    "evaluation/studies/<int:study_id>/results.pdf": Rule(
        "/evaluation/studies/{study}/results.pdf", ADMIN, NOT_ALLOWED),
    "evaluation/studies/<int:study_id>/answers.csv": Rule(
        "/evaluation/studies/{study}/answers.csv", ADMIN, NOT_ALLOWED),
    "evaluation/studies/<int:study_id>/answers.json": Rule(
        "/evaluation/studies/{study}/answers.json", ADMIN, NOT_ALLOWED),
    "evaluation/studies/<int:study_id>/data-dictionary/": Rule(
        "/evaluation/studies/{study}/data-dictionary/", ADMIN, NOT_ALLOWED),
    # {trial} is an A/B trial not yet sent: an admin's POST proposes a group, then redirects.
    "evaluation/trials/<int:trial_id>/to-curation/": Rule(
        "/evaluation/trials/{trial}/to-curation/", NOT_ALLOWED, ADMIN_ACT),
    # evaluation: benchmark and judge runs
    "evaluation/benchmarks/": Rule("/evaluation/benchmarks/", ADMIN, NOT_ALLOWED),
    # An empty form: an admin gets it back with its errors.
    "evaluation/benchmarks/new/": Rule("/evaluation/benchmarks/new/", ADMIN, ADMIN),
    "evaluation/benchmarks/<int:run_id>/": Rule(
        "/evaluation/benchmarks/{benchmark}/", ADMIN, NOT_ALLOWED),
    # Same for the judge form of a complete benchmark run.
    "evaluation/benchmarks/<int:run_id>/judge/": Rule(
        "/evaluation/benchmarks/{benchmark}/judge/", ADMIN, ADMIN),
    "evaluation/judge/<int:judge_id>/": Rule("/evaluation/judge/{judge}/", ADMIN, NOT_ALLOWED),
    # Refused (no key) or resumed, an admin is sent back to the judge run: a redirect.
    "evaluation/judge/<int:judge_id>/resume/": Rule(
        "/evaluation/judge/{judge}/resume/", NOT_ALLOWED, ADMIN_ACT),
}
# fmt: on
# Pages anyone may see without signing in.
PUBLIC = {"login/", "logout/", "healthz/"} | {r for r in RULES if r.startswith("study/")}
# A study participant: no account, their study's pages through their session. Everywhere
# else they get what an anonymous visitor gets.
PARTICIPANT: dict[str, tuple[Answer, Answer]] = {
    route: (RULES[route].get[0], RULES[route].post[0]) for route in PUBLIC if route in RULES
} | {
    # The study link takes a participant who already consented back to their trials.
    "study/<str:slug>/": (302, 302),
}


def _project_routes() -> list[str]:
    """Every URL pattern's full route, as resolve() reports it; the admin site aside."""
    routes: list[str] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = str(pattern.pattern).removeprefix("^")
            if isinstance(pattern, URLResolver):
                if pattern.app_name != "admin":
                    walk(pattern.url_patterns, prefix + route)
            elif isinstance(pattern, URLPattern):
                routes.append(prefix + route)

    walk(get_resolver().url_patterns, "")
    return routes


def test_every_url_pattern_has_a_permission_rule() -> None:
    routes = _project_routes()
    assert sorted(set(routes) - set(RULES)) == [], "URL patterns without a row in RULES"
    assert sorted(set(RULES) - set(routes)) == [], "rows in RULES for no URL pattern"


def test_each_rule_example_reaches_its_own_pattern() -> None:
    dummy = dict.fromkeys(
        (
            "image",
            "other_image",
            "group",
            "caption",
            "job",
            "failed_job",
            "running_job",
            "order",
            "study",
            "trial",
            "participant",
            "slug",
            "token",
            "benchmark",
            "judge",
            "batch",
        ),
        "1",
    )
    wrong = {
        route: resolve(rule.url.format(**dummy, media="images/x.png", model="1")).route
        for route, rule in RULES.items()
    }
    assert {route: got for route, got in wrong.items() if got != route} == {}


def test_anonymous_visitors_are_only_ever_sent_to_sign_in_or_refused() -> None:
    for route, rule in RULES.items():
        for method, answers in (("GET", rule.get), ("POST", rule.post)):
            assert 500 not in answers, (route, method)
            if route not in PUBLIC:
                assert answers[0] in (LOGIN, 403, 405), (route, method, answers[0])


@pytest.fixture
def world(db: Any, django_user_model: Any, png_factory: Any, data_dir: Path) -> dict[str, Any]:
    """One of each thing a URL can name, and a user per role (no passwords: nothing to hash)."""
    users: dict[str, Any] = {"anonymous": None}
    for role in ("annotator", "reviewer", "admin"):
        users[role] = django_user_model.objects.create(username=f"the-{role}")
        assign_role(users[role], role)
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(3)]
    group = group_create(title="g", images=images[:2])
    caption = caption_create(
        text="A {Object} beside a {Object}.", group=group, author=users["annotator"]
    )
    exports = data_dir / "exports"
    exports.mkdir()
    archive = exports / "x.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))
    jobs = {
        f"{status}_job": Job.objects.create(kind=Job.Kind.EXPORT_DATASET, status=status)
        for status in (Job.Status.FAILED, Job.Status.RUNNING)
    }
    jobs["job"] = Job.objects.create(
        kind=Job.Kind.EXPORT_DATASET, status=Job.Status.SUCCEEDED, artifacts={"path": str(archive)}
    )
    model = TrainedModel.objects.create(
        kind=TrainedModel.Kind.RELSIM, name="m", folder=str(data_dir / "models" / "m")
    )
    batch = Job.objects.create(kind=Job.Kind.CAPTION, status=Job.Status.SUCCEEDED)
    caption_create(
        text="A {Animal} beside a {Object}.",
        image=images[1],
        source=Caption.Source.MODEL,
        draft_job_id=batch.pk,
    )
    study = Study.objects.create(name="s", reference_method="relsim", baselines=["dino"])
    trial = Trial.objects.create(
        study=study,
        query=images[0],
        image_a=images[1],
        image_b=images[2],
        method_a="relsim",
        method_b="dino",
    )
    study.is_open = True
    study.save()
    text = StudyText.objects.create(study=study, version=1, consent="c", instructions="i")
    participant = Participant.objects.create(study=study, text=text, trial_count=1)
    Assignment.objects.create(participant=participant, trial=trial, position=0, a_on_left=True)
    benchmark = BenchmarkRun.objects.create(
        name="b", methods={"phash": {"label": "phash"}}, finished_at=timezone.now()
    )
    judge = JudgeRun.objects.create(
        benchmark=benchmark, endpoint="http://127.0.0.1:9/v1", model_name="m", methods=["phash"]
    )
    return {
        "users": users,
        "participant": participant,
        "images": images,
        "group": group,
        "caption": caption,
        "model": model,
        "study": study,
        "trial": trial,
        "benchmark": benchmark,
        "judge": judge,
        "batch": batch,
        **jobs,
    }


def _values(world: dict[str, Any]) -> dict[str, str]:
    first, second, third = world["images"]
    return {
        "image": str(first.pk),
        "other_image": str(third.pk),
        "group": str(world["group"].pk),
        "caption": str(world["caption"].pk),
        "job": str(world["job"].pk),
        "failed_job": str(world["failed_job"].pk),
        "running_job": str(world["running_job"].pk),
        "model": str(world["model"].pk),
        "study": str(world["study"].pk),
        "trial": str(world["trial"].pk),
        "participant": str(world["participant"].pk),
        "slug": world["study"].slug,
        "token": world["participant"].token,
        "benchmark": str(world["benchmark"].pk),
        "judge": str(world["judge"].pk),
        "batch": str(world["batch"].pk),
        "media": first.file.name,
        "order": f"{second.pk},{first.pk}",
    }


def _answer(response: Any) -> Answer:
    location = response.get("Location", "")
    if response.status_code == 302 and location.startswith(settings.LOGIN_URL):
        return LOGIN
    return int(response.status_code)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_the_expected_answer_from_every_pattern(
    role: str, world: dict[str, Any]
) -> None:
    values = _values(world)
    user = world["users"][role]
    column = ROLES.index(role)
    # A server error is an answer to report like any other, not an exception.
    client = Client(raise_request_exception=False)
    wrong = []
    for route in sorted(RULES):
        rule = RULES[route]
        url = rule.url.format(**values)
        data = {key: value.format(**values) for key, value in rule.data.items()}
        for method, answers in (("get", rule.get), ("post", rule.post)):
            # Each request starts from the same world: what the last one did is undone.
            with transaction.atomic():
                client.logout()
                if user is not None:
                    client.force_login(user)
                response = getattr(client, method)(url, data if method == "post" else {})
                got = _answer(response)
                transaction.set_rollback(True)
            if got != answers[column]:
                wrong.append(f"{method.upper()} {url}: {got}, expected {answers[column]}")
    assert wrong == [], f"as {role}:\n" + "\n".join(wrong)


def test_a_study_participant_reaches_their_study_and_nothing_else(world: dict[str, Any]) -> None:
    """The participant role: a browser that consented to a study (its session holds the
    participant's token) gets the study's pages, and elsewhere what anyone anonymous gets."""
    values = _values(world)
    client = Client(raise_request_exception=False)
    wrong = []
    for route in sorted(RULES):
        rule = RULES[route]
        url = rule.url.format(**values)
        data = {key: value.format(**values) for key, value in rule.data.items()}
        expected = PARTICIPANT.get(route, (rule.get[0], rule.post[0]))
        for method, answer in zip(("get", "post"), expected, strict=True):
            with transaction.atomic():
                client.cookies.clear()
                entry = client.post(f"/study/{values['slug']}/", {"agree": "yes"})
                assert entry.status_code == 302 and "/study/p/" in entry["Location"]
                response = getattr(client, method)(url, data if method == "post" else {})
                got = _answer(response)
                transaction.set_rollback(True)
            if got != answer:
                wrong.append(f"{method.upper()} {url}: {got}, expected {answer}")
    assert wrong == [], "as a participant:\n" + "\n".join(wrong)


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_start_retry_or_cancel_jobs_whether_by_get_or_post(
    role: str, world: dict[str, Any], data_dir: Path
) -> None:
    folder = data_dir / "imports" / "batch"
    folder.mkdir(parents=True)
    failed, running = world["failed_job"], world["running_job"]
    # The POST bodies that start a job for an admin; the admin site's import page included.
    posts = {
        "/admin/training/job/import/": {"kind": Job.Kind.IMPORT_IMAGES, "path": str(folder)},
        "/export/": {"splits": "train"},
        f"/jobs/{failed.pk}/retry/": {},
        f"/jobs/{running.pk}/cancel/": {},
    }
    client = Client()
    if world["users"][role] is not None:
        client.force_login(world["users"][role])
    before = Job.objects.count()
    for url, data in posts.items():
        assert client.get(url).status_code in (200, 302, 403, 405), url
        assert client.post(url, data).status_code in (302, 403), url
    failed.refresh_from_db()
    running.refresh_from_db()
    admin = role == "admin"
    assert Job.objects.count() - before == (2 if admin else 0)
    assert failed.status == (Job.Status.PENDING if admin else Job.Status.FAILED)
    assert running.cancel_requested is admin


def test_a_forbidden_page_says_why(world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(world["users"]["annotator"])
    response = client.get(reverse("review_queue"))
    assert response.status_code == 403
    assert b"Your role does not give access" in response.content


def test_navigation_shows_what_the_role_may_do(world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(world["users"]["annotator"])
    page = client.get("/").content.decode()
    assert reverse("label_queue") in page and reverse("review_queue") not in page
    assert reverse("export") not in page
    client.force_login(world["users"]["admin"])
    page = client.get("/").content.decode()
    assert reverse("review_queue") in page and reverse("export") in page


def test_the_world_holds_what_the_rules_name(world: dict[str, Any]) -> None:
    assert Image.objects.count() == 3
    assert world["group"].members.count() == 2
    assert (Path(settings.MEDIA_ROOT) / world["images"][0].file.name).is_file()
