"""The A/B study from the builder to the completion code: trials from a benchmark run,
balanced sides, one answer per trial whatever the browser sends, Prolific's ids, repeat
visits, resuming, and what a participant can and cannot reach."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from evaluation.models import Answer, Assignment, Participant, Study, Trial
from evaluation.study_forms import StudyForm
from evaluation.study_services import (
    StudyError,
    answer_record,
    participant_set_excluded,
    participant_start,
    study_create,
    study_recruitment,
    study_text_add,
)
from tests.evaluation.study_data import finished_benchmark

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


def _study(png_factory: Any, **options: Any) -> Study:
    run = finished_benchmark(png_factory)
    settings = {
        "name": "s",
        "benchmark": run,
        "reference_method": "relsim:1",
        "baselines": ["phash", "clip-i"],
        "trials_per_participant": 6,
        "catch_per_participant": 1,
        "completion_code": "C0MPLETE",
        "screenout_code": "NOPE",
        **options,
    }
    study = study_create(**settings).study
    study.is_open = True
    study.save()
    return study


def test_trials_pit_the_reference_top1_against_each_baseline(png_factory: Any) -> None:
    run = finished_benchmark(png_factory)
    built = study_create(
        name="s",
        benchmark=run,
        reference_method="relsim:1",
        baselines=["phash", "clip-i"],
        trials_per_participant=4,
        catch_per_participant=1,
    )
    ab = Trial.objects.filter(study=built.study, kind=Trial.Kind.AB)
    # 6 queries x 2 baselines, less the one query where clip-i found relsim's image.
    assert built.ab_trials == ab.count() == 11
    assert built.skipped_same_image == 1
    for trial in ab:
        assert trial.method_a == "relsim:1"
        assert trial.image_a_id != trial.image_b_id
        top = trial.benchmark_query.retrievals.get(method=trial.method_b).hits[0]
        assert trial.image_b_id == top
    catch = Trial.objects.filter(study=built.study, kind=Trial.Kind.CATCH)
    assert catch.exists()
    for trial in catch:
        groups_of_query = set(trial.query.groups.values_list("pk", flat=True))
        assert groups_of_query & set(trial.image_a.groups.values_list("pk", flat=True))
        assert not groups_of_query & set(trial.image_b.groups.values_list("pk", flat=True))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"baselines": ["relsim:1"]}, "other than the reference"),
        ({"baselines": ["nope"]}, "not a method of this benchmark run: nope"),
        ({"trials_per_participant": 7}, "only 6 A/B trials: set trials per participant to 6"),
    ],
)
def test_a_study_that_cannot_work_is_refused(
    png_factory: Any, change: dict[str, Any], message: str
) -> None:
    run = finished_benchmark(png_factory)
    options: dict[str, Any] = {
        "name": "s",
        "benchmark": run,
        "reference_method": "relsim:1",
        "baselines": ["phash"],
        "trials_per_participant": 4,
        "catch_per_participant": 0,
        **change,
    }
    with pytest.raises(StudyError, match=message):
        study_create(**options)
    assert not Study.objects.exists()  # nothing half-built


def test_sides_are_balanced_per_participant_and_catch_trials_included(png_factory: Any) -> None:
    study = _study(png_factory)
    text = study.texts.get()
    for _ in range(4):
        participant = participant_start(study=study, text=text, platform={}).participant
        assignments = list(participant.assignments.select_related("trial"))
        assert len(assignments) == 7  # 6 A/B + 1 catch
        lefts = sum(a.a_on_left for a in assignments)
        assert lefts in (3, 4)
        kinds = [a.trial.kind for a in assignments]
        assert kinds.count(Trial.Kind.CATCH) == 1
        assert kinds[0] == Trial.Kind.AB  # a catch trial never comes first
        baselines = [a.trial.method_b for a in assignments if a.trial.kind == Trial.Kind.AB]
        assert baselines.count("phash") == baselines.count("clip-i") == 3


def test_an_answer_is_recorded_once_and_names_the_preferred_method(png_factory: Any) -> None:
    study = _study(png_factory)
    participant = participant_start(study=study, text=study.texts.get(), platform={}).participant
    first = participant.assignments.select_related("trial").get(position=0)
    recorded = answer_record(participant=participant, position=0, choice="left", response_ms=900)
    again = answer_record(participant=participant, position=0, choice="right", response_ms=5)
    assert recorded.created and not again.created
    answer = Answer.objects.get(participant=participant)
    assert answer.choice == "left" and answer.response_ms == 900
    expected = first.trial.method_a if first.a_on_left else first.trial.method_b
    assert answer.preferred == expected
    with pytest.raises(StudyError, match="no trial 99"):
        answer_record(participant=participant, position=99, choice="left", response_ms=1)
    with pytest.raises(StudyError, match="unknown answer"):
        answer_record(participant=participant, position=1, choice="up", response_ms=1)


def _start(client: Client, study: Study, pid: str = "") -> str:
    query = f"?PROLIFIC_PID={pid}&STUDY_ID=st1&SESSION_ID=se1" if pid else ""
    page = client.get(reverse("study_entry", args=[study.slug]) + query)
    assert page.status_code == 200
    assert "Consent form version 1" in page.content.decode()
    data = {"agree": "yes", "viewport": "390x844"}
    if pid:
        data |= {"PROLIFIC_PID": pid, "STUDY_ID": "st1", "SESSION_ID": "se1"}
    response = client.post(reverse("study_entry", args=[study.slug]), data)
    assert response.status_code == 302, response.content.decode()[:500]
    token = re.search(r"/study/p/([^/]+)/", response["Location"])
    assert token is not None
    return token.group(1)


def _answer_all(client: Client, token: str, *, as_script: bool = False) -> Any:
    """Answer every trial in order: as study.js does (asking for JSON, which must name the
    next trial each time), or as a plain form post."""
    participant = Participant.objects.get(token=token)
    response = None
    total = participant.assignments.count()
    for assignment in participant.assignments.order_by("position"):
        headers = {"HTTP_ACCEPT": "application/json"} if as_script else {}
        url = reverse("participant_answer", args=[token])
        data = {"position": assignment.position, "choice": "left", "response_ms": 1200}
        response = client.post(url, data, **headers)
        if as_script:
            assert response.status_code == 200
            reply = response.json()
            following = assignment.position + 2
            if assignment.position + 1 < total:
                assert reply == {
                    "position": assignment.position + 1,
                    "following": following if following < total else None,
                    "answered": assignment.position + 1,
                    "total": total,
                }
        else:
            assert response.status_code == 302
    return response


def test_a_participant_from_prolific_completes_and_gets_the_code(png_factory: Any) -> None:
    study = _study(png_factory)
    client = Client()
    token = _start(client, study, pid="abc123")
    participant = Participant.objects.get(token=token)
    assert (participant.platform_pid, participant.platform_study_id) == ("abc123", "st1")
    assert participant.viewport == "390x844"
    # Not done yet: the done page sends them back to their trials.
    assert client.get(reverse("participant_done", args=[token]))["Location"].endswith(
        f"/study/p/{token}/"
    )
    last = _answer_all(client, token, as_script=True)
    assert last.json() == {"done": reverse("participant_done", args=[token])}
    done = client.get(reverse("participant_done", args=[token])).content.decode()
    assert "C0MPLETE" in done
    assert "https://app.prolific.com/submissions/complete?cc=C0MPLETE" in done
    assert Answer.objects.filter(participant=participant).count() == 7
    participant.refresh_from_db()
    assert participant.finished_at is not None
    # The same Prolific id again, even from another browser: no second participant.
    other = Client()
    response = other.post(
        reverse("study_entry", args=[study.slug]),
        {"agree": "yes", "PROLIFIC_PID": "abc123", "STUDY_ID": "st1", "SESSION_ID": "se2"},
    )
    assert response.status_code == 409
    assert "already taken part" in response.content.decode()
    # ... and told so on arrival, before any consent form.
    arrival = Client().get(
        reverse("study_entry", args=[study.slug]) + "?PROLIFIC_PID=abc123&STUDY_ID=st1"
    )
    assert arrival.status_code == 409 and "already taken part" in arrival.content.decode()
    assert Participant.objects.filter(study=study).count() == 1


def test_an_unfinished_prolific_participant_arriving_again_is_taken_back(
    png_factory: Any,
) -> None:
    study = _study(png_factory)
    token = _start(Client(), study, pid="back1")
    answer_record(
        participant=Participant.objects.get(token=token), position=0, choice="left", response_ms=1
    )
    other_browser = Client()
    arrival = other_browser.get(reverse("study_entry", args=[study.slug]) + "?PROLIFIC_PID=back1")
    assert arrival["Location"] == reverse("participant_trial", args=[token])
    page = other_browser.get(arrival["Location"]).content.decode()
    assert 'name="position" value="1"' in page


def test_a_trial_further_on_than_the_open_one_is_refused(png_factory: Any) -> None:
    study = _study(png_factory)
    client = Client()
    token = _start(client, study)
    url = reverse("participant_answer", args=[token])
    ahead = client.post(url, {"position": 3, "choice": "left", "response_ms": 900})
    assert ahead.status_code == 400
    assert "trial 3 is not the one on screen (that is trial 0)" in ahead.content.decode()
    assert not Answer.objects.exists()
    assert client.post(url, {"position": 0, "choice": "left"}).status_code == 302
    # An answer to a trial already answered (a stale second tab) stays harmless.
    assert client.post(url, {"position": 0, "choice": "right"}).status_code == 302
    assert Answer.objects.get().choice == "left"


def test_double_submits_reloads_and_the_back_button_leave_one_answer_per_trial(
    png_factory: Any,
) -> None:
    study = _study(png_factory)
    client = Client()
    token = _start(client, study)
    answer_url = reverse("participant_answer", args=[token])
    for _ in range(3):  # a double click and a resent form after "back"
        client.post(answer_url, {"position": 0, "choice": "right", "response_ms": 800})
    page = client.get(reverse("participant_trial", args=[token])).content.decode()
    assert 'name="position" value="1"' in page  # the reload resumes at the next trial
    assert 'Trial <strong id="trial-number">2</strong> of 7' in page
    # The study link itself, revisited in the same browser, resumes too.
    again = client.get(reverse("study_entry", args=[study.slug]))
    assert again["Location"] == reverse("participant_trial", args=[token])
    assert Answer.objects.filter(participant__token=token).count() == 1


def test_an_expired_session_is_not_resumed(png_factory: Any) -> None:
    study = _study(png_factory, resume_hours=1)
    client = Client()
    token = _start(client, study)
    Participant.objects.filter(token=token).update(
        started_at=Participant.objects.get(token=token).started_at - timedelta(hours=2)
    )
    response = client.get(reverse("participant_trial", args=[token]))
    assert response.status_code == 410
    posted = client.post(
        reverse("participant_answer", args=[token]), {"position": 0, "choice": "left"}
    )
    assert posted.status_code == 410
    assert not Answer.objects.exists()


def test_declining_consent_records_nothing_and_gives_the_screen_out_code(
    png_factory: Any,
) -> None:
    study = _study(png_factory)
    response = Client().post(
        reverse("study_entry", args=[study.slug]), {"agree": "no", "PROLIFIC_PID": "x1"}
    )
    assert response.status_code == 200
    assert "NOPE" in response.content.decode()
    assert not Participant.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"position": "0", "choice": "sideways"},
        {"position": "-1", "choice": "left"},
        {"position": "0", "choice": "left", "response_ms": "soon"},
        {"position": "0", "choice": "left", "viewport": "<script>"},
        {"choice": "left"},
        {"position": "٣", "choice": "left"},
        {"position": "100001", "choice": "left"},
        {"position": "0", "choice": "left", "response_ms": "86400001"},
    ],
)
def test_a_malformed_answer_is_refused_with_a_reason(
    png_factory: Any, data: dict[str, str]
) -> None:
    study = _study(png_factory)
    client = Client()
    token = _start(client, study)
    response = client.post(reverse("participant_answer", args=[token]), data)
    assert response.status_code == 400
    assert "could not be read" in response.content.decode()
    assert not Answer.objects.exists()


def test_a_malformed_answer_names_each_field_that_is_wrong(png_factory: Any) -> None:
    study = _study(png_factory)
    client = Client()
    token = _start(client, study)
    data = {"position": "x", "choice": "up", "response_ms": "-5"}
    text = client.post(reverse("participant_answer", args=[token]), data).content.decode()
    assert "position: enter a whole number" in text
    assert "choice: &#x27;up&#x27; is not one of left, right or same" in text
    assert "response_ms: enter a whole number" in text


def test_the_trial_links_match_the_url_patterns(png_factory: Any) -> None:
    """The trial page builds its image and answer links from format strings: they must be
    what reverse() gives."""
    study = _study(png_factory)
    client = Client()
    token = _start(client, study)
    page = client.get(reverse("participant_trial", args=[token])).content.decode()
    for slot in ("query", "left", "right"):
        assert reverse("participant_image", args=[token, 0, slot]) in page
        assert reverse("participant_image", args=[token, 1, slot]) in page  # preloaded
    assert f'action="{reverse("participant_answer", args=[token])}"' in page
    # study.js makes the next trials' image URLs from this one.
    template = re.search(r'data-image-url="([^"]+)"', page)
    assert template is not None
    filled = template.group(1).replace("{position}", "7").replace("{slot}", "left")
    assert filled == reverse("participant_image", args=[token, 7, "left"])
    done = client.post(
        reverse("participant_answer", args=[token]),
        {"position": 0, "choice": "left"},
        HTTP_ACCEPT="application/json",
    )
    assert done.json()["position"] == 1


def test_bad_platform_ids_in_the_link_are_refused(png_factory: Any) -> None:
    study = _study(png_factory)
    response = Client().get(
        reverse("study_entry", args=[study.slug]) + "?PROLIFIC_PID=%3Cscript%3E"
    )
    assert response.status_code == 400


def test_participants_reach_their_own_trials_only(png_factory: Any) -> None:
    study = _study(png_factory)
    alice, bob = Client(), Client()
    alice_token, bob_token = _start(alice, study), _start(bob, study)
    image = alice.get(reverse("participant_image", args=[alice_token, 0, "left"]))
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert (
        alice.get(reverse("participant_image", args=[alice_token, 99, "left"])).status_code == 404
    )
    assert alice.get(reverse("participant_image", args=["guess", 0, "left"])).status_code == 404
    # The image URL names a place on screen, never a method or an image id.
    page = alice.get(reverse("participant_trial", args=[alice_token])).content.decode()
    assert "relsim" not in page and "phash" not in page and "clip" not in page
    assert f"/study/p/{alice_token}/img/0/left.png" in page
    # A participant's session does not open the team's pages.
    for url in ("/pool/", "/evaluation/", f"/evaluation/studies/{study.pk}/", "/media/x.png"):
        assert alice.get(url).status_code in (302, 403)
    assert bob_token != alice_token


def test_a_closed_study_is_not_found(png_factory: Any) -> None:
    study = _study(png_factory)
    client = Client()
    token = _start(client, study)
    study.is_open = False
    study.save()
    entry = client.get(reverse("study_entry", args=[study.slug]))
    assert entry.status_code == 404
    assert "This study is not open" in entry.content.decode()
    midway = client.get(reverse("participant_trial", args=[token]))
    assert midway.status_code == 404 and "return the study" in midway.content.decode()
    unknown = Client().get(reverse("participant_trial", args=["made-up"]))
    assert unknown.status_code == 404 and "This link is not valid" in unknown.content.decode()


def test_a_new_consent_version_applies_to_new_participants_only(png_factory: Any) -> None:
    study = _study(png_factory)
    first = _start(Client(), study)
    study_text_add(study=study, consent="New words.", instructions="New steps.")
    page = Client().get(reverse("study_entry", args=[study.slug])).content.decode()
    assert "New words." in page and "version 2" in page
    second = _start_any(study)
    versions = {p.token: p.text.version for p in Participant.objects.select_related("text")}
    assert versions[first] == 1 and versions[second] == 2


def _start_any(study: Study) -> str:
    response = Client().post(reverse("study_entry", args=[study.slug]), {"agree": "yes"})
    return response["Location"].split("/")[3]


def test_admins_build_open_preview_and_delete(
    png_factory: Any, admin_user_role: Any, annotator: Any
) -> None:
    run = finished_benchmark(png_factory)
    client = Client()
    client.force_login(admin_user_role)
    form = client.get(reverse("study_new") + f"?benchmark={run.pk}").content.decode()
    assert 'value="relsim:1"' in form
    bad = client.post(
        reverse("study_new"),
        {
            "name": "x",
            "benchmark": run.pk,
            "reference_method": "relsim:1",
            "baselines": ["relsim:1"],
            "trials_per_participant": 5,
            "catch_per_participant": 0,
            "resume_hours": 24,
            "answers_per_baseline": 0,
            "consent": "c",
            "instructions": "i",
        },
    )
    assert bad.status_code == 400
    assert "cannot also be a baseline" in bad.content.decode()
    assert "greater than or equal to 1" in bad.content.decode()
    response = client.post(
        reverse("study_new"),
        {
            "name": "first study",
            "benchmark": run.pk,
            "reference_method": "relsim:1",
            "baselines": ["phash", "clip-i"],
            "trials_per_participant": 4,
            "catch_per_participant": 1,
            "completion_code": "CC1",
            "resume_hours": 24,
            "answers_per_baseline": 850,
            "consent": "Consent words.",
            "instructions": "Instruction words.",
        },
    )
    assert response.status_code == 302
    study = Study.objects.get(name="first study")
    assert Client().get(reverse("study_entry", args=[study.slug])).status_code == 404
    client.post(reverse("study_open", args=[study.pk]), {"open": "1"})
    detail = client.get(reverse("study_detail", args=[study.pk])).content.decode()
    assert study.slug in detail and "PROLIFIC_PID={{%PROLIFIC_PID%}}" in detail
    # 850 answers for each of 2 baselines at 4 A/B trials a participant: 425 participants.
    assert study.answers_per_baseline == 850
    assert "takes <strong>425</strong> participants" in detail
    preview = client.get(reverse("study_preview", args=[study.pk]) + "?n=1")
    assert preview.status_code == 200 and "nothing is recorded" in preview.content.decode()
    assert not Participant.objects.exists()
    token = _start(Client(), study)
    participant = Participant.objects.get(token=token)
    answer_record(participant=participant, position=0, choice="same", response_ms=1000)
    annotator_client = Client()
    annotator_client.force_login(annotator)
    delete_url = reverse("participant_data_delete", args=[participant.pk])
    assert annotator_client.post(delete_url).status_code == 403
    assert client.post(delete_url).status_code == 302
    assert not Participant.objects.exists() and not Answer.objects.exists()
    assert not Assignment.objects.exists()


def test_answers_faster_than_a_person_are_refused_for_a_while(
    png_factory: Any, settings: Any
) -> None:
    from django.core.cache import cache

    cache.clear()
    settings.RELSIM_STUDY_ANSWER_BURST = 3
    study = _study(png_factory)
    client = Client()
    token = _start(client, study)
    url = reverse("participant_answer", args=[token])
    codes = [
        client.post(url, {"position": n, "choice": "left", "response_ms": 900}).status_code
        for n in range(5)
    ]
    assert codes == [302, 302, 302, 429, 429]
    assert Answer.objects.filter(participant__token=token).count() == 3


def test_the_admin_site_deletes_a_participants_data_on_request(
    png_factory: Any, admin_user_role: Any
) -> None:
    study = _study(png_factory)
    token = _start(Client(), study)
    participant = Participant.objects.get(token=token)
    answer_record(participant=participant, position=0, choice="left", response_ms=700)
    client = Client()
    client.force_login(admin_user_role)
    response = client.post(
        "/admin/evaluation/participant/",
        {"action": "delete_data", "_selected_action": [participant.pk]},
        follow=True,
    )
    assert "Deleted 1 participants&#x27; data and 1 answers." in response.content.decode()
    assert not Participant.objects.exists() and not Answer.objects.exists()


def test_recruitment_counts_each_baselines_answers_against_the_target(
    png_factory: Any,
) -> None:
    study = _study(png_factory, answers_per_baseline=9)
    # 6 A/B trials a participant over 2 baselines: 3 answers each, so 3 participants.
    plan = study_recruitment(study)
    assert plan.participants_needed == 3 and plan.participants_to_go == 3
    assert [(row.baseline, row.answers, row.target) for row in plan.baselines] == [
        ("phash", 0, 9),
        ("clip-i", 0, 9),
    ]
    tokens = []
    for _ in range(2):
        client = Client()
        tokens.append(_start(client, study))
        _answer_all(client, tokens[-1])
    plan = study_recruitment(study)
    # Catch-trial answers are not counted: 3 per baseline per participant.
    assert [row.answers for row in plan.baselines] == [6, 6]
    assert [row.percent for row in plan.baselines] == [67, 67]
    assert plan.participants_to_go == 1 and not plan.reached
    participant_set_excluded(participant=Participant.objects.get(token=tokens[0]), excluded=True)
    plan = study_recruitment(study)
    assert [row.answers for row in plan.baselines] == [3, 3]
    assert plan.participants_to_go == 2
    for _ in range(2):
        client = Client()
        _answer_all(client, _start(client, study))
    assert study_recruitment(study).reached


def test_each_participant_gets_as_many_trials_of_each_baseline_as_can_be(
    png_factory: Any,
) -> None:
    """With an odd number of A/B trials a participant, which baseline gets the extra one
    varies between participants."""
    study = _study(png_factory, trials_per_participant=5, catch_per_participant=0)
    extra = set()
    # Chance alone would give one baseline the extra trial 20 times in a row once in 500,000.
    for _ in range(20):
        token = _start(Client(), study)
        methods = list(
            Assignment.objects.filter(participant__token=token).values_list(
                "trial__method_b", flat=True
            )
        )
        counts = sorted((methods.count("phash"), methods.count("clip-i")))
        assert counts == [2, 3]
        extra.add(max(("phash", "clip-i"), key=methods.count))
    assert extra == {"phash", "clip-i"}


def test_the_study_form_starts_valid_when_the_run_has_no_relsim_method(
    png_factory: Any,
) -> None:
    """Without a relsim method the first method is the reference and the others the
    baselines, rather than every method ticked as a baseline beside the reference."""
    run = finished_benchmark(png_factory)
    run.methods = {k: v for k, v in run.methods.items() if not k.startswith("relsim")}
    run.save()
    form = StudyForm(run=run)
    reference = form.fields["reference_method"].initial
    assert reference == next(iter(run.methods))
    assert form.fields["baselines"].initial == [k for k in run.methods if k != reference]


def test_the_script_is_told_why_an_answer_was_refused_and_nothing_is_stored(
    png_factory: Any, settings: Any
) -> None:
    """Each refusal comes back as JSON for study.js to show, and the one statement that
    stores an answer on PostgreSQL refuses what the checks in Python refuse."""
    from django.core.cache import cache

    cache.clear()
    study = _study(png_factory, resume_hours=1)
    client = Client()
    token = _start(client, study)
    url = reverse("participant_answer", args=[token])

    def send(position: int, *, to: str = url) -> Any:
        data = {"position": position, "choice": "left", "response_ms": 900}
        return client.post(to, data, HTTP_ACCEPT="application/json")

    ahead = send(2)
    assert ahead.status_code == 400
    assert "not the one on screen (that is trial 0)" in ahead.json()["text"]
    unknown = send(0, to=reverse("participant_answer", args=["made-up"]))
    assert unknown.status_code == 404 and unknown.json()["title"] == "This link is not valid"
    unreadable = client.post(url, {"position": "x"}, HTTP_ACCEPT="application/json")
    assert unreadable.status_code == 400 and "position" in unreadable.json()["text"]

    Study.objects.filter(pk=study.pk).update(is_open=False)
    closed = send(0)
    assert closed.status_code == 404 and closed.json()["title"] == "This study is not open"
    Study.objects.filter(pk=study.pk).update(is_open=True)

    participant = Participant.objects.get(token=token)
    Participant.objects.filter(pk=participant.pk).update(
        started_at=participant.started_at - timedelta(hours=2)
    )
    expired = send(0)
    assert expired.status_code == 410 and expired.json()["title"] == "This session has expired"
    assert not Answer.objects.exists()

    # Back within the hour: every answer goes in, the last one marks them finished, and a
    # finished participant sending again is sent to the done page with nothing added.
    Participant.objects.filter(pk=participant.pk).update(started_at=participant.started_at)
    _answer_all(client, token, as_script=True)
    participant.refresh_from_db()
    assert participant.finished_at is not None
    again = send(0)
    assert again.json() == {"done": reverse("participant_done", args=[token])}
    assert Answer.objects.filter(participant=participant).count() == participant.trial_count

    settings.RELSIM_STUDY_ANSWER_BURST = 0
    slow = send(0)
    assert slow.status_code == 429 and slow.json()["title"] == "Slow down"
