"""The results pages: who may see them, the figures and chart on the page, the raw answer
downloads and their data dictionary, and sending a trial back to curation."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from curation.intake import normalise_image
from curation.models import Group
from curation.services import image_store
from evaluation.models import Answer, Participant, Study, StudyText, Trial
from evaluation.results_export import HEADER

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(png_factory: Any) -> Study:
    """relsim against dino: trial 1 where two of three raters preferred dino, trial 2 where
    relsim won, and a catch trial answered right."""
    images = [image_store(normalised=normalise_image(png_factory(500 + n))).image for n in range(6)]
    study = Study.objects.create(name="pilot", reference_method="relsim", baselines=["dino"])
    text = StudyText.objects.create(study=study, version=1, consent="c", instructions="i")
    lost = Trial.objects.create(
        study=study,
        query=images[0],
        image_a=images[1],
        image_b=images[2],
        method_a="relsim",
        method_b="dino",
    )
    won = Trial.objects.create(
        study=study,
        query=images[3],
        image_a=images[4],
        image_b=images[5],
        method_a="relsim",
        method_b="dino",
    )
    catch = Trial.objects.create(
        study=study,
        kind="catch",
        query=images[0],
        image_a=images[3],
        image_b=images[5],
        method_a="catch:group",
        method_b="catch:unrelated",
    )
    people = [
        Participant.objects.create(study=study, text=text, platform_pid=f"P{n}") for n in range(3)
    ]
    # choice, a_on_left, preferred for the lost trial: dino, dino, same.
    for person, (choice, a_on_left, preferred) in zip(
        people,
        [("right", True, "dino"), ("left", False, "dino"), ("same", True, "")],
        strict=True,
    ):
        Answer.objects.create(
            participant=person,
            trial=lost,
            position=0,
            choice=choice,
            a_on_left=a_on_left,
            preferred=preferred,
            response_ms=1500,
            viewport="1280x800",
        )
    Answer.objects.create(
        participant=people[0],
        trial=won,
        position=1,
        choice="left",
        a_on_left=True,
        preferred="relsim",
        response_ms=2000,
    )
    Answer.objects.create(
        participant=people[1],
        trial=catch,
        position=1,
        choice="right",
        a_on_left=False,
        preferred="catch:group",
        response_ms=900,
    )
    return study


def _lost(study: Study) -> Trial:
    """The A/B trial that most raters gave to dino (the first one made)."""
    return study.trials.filter(kind="ab").earliest("id")


def _body(response: Any) -> bytes:
    """All of a streamed response's content."""
    return b"".join(response.streaming_content)


def _urls(study: Study) -> list[str]:
    return [
        reverse(name, args=[study.pk])
        for name in (
            "study_results",
            "study_chart_png",
            "study_chart_pdf",
            "study_answers_csv",
            "study_answers_json",
            "study_data_dictionary",
        )
    ]


def test_the_results_page_shows_the_table_chart_checks_and_candidates(
    admin_client: Client, study: Study
) -> None:
    response = admin_client.get(reverse("study_results", args=[study.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    # relsim 1, tie 1, dino 2 of 4 A/B answers: 25.0%, 25.0%, 50.0%.
    row = page[page.index('id="ab-dino"') :]
    row = row[: row.index("</tr>")]
    assert [part.split("</strong>")[0] for part in row.split("<strong>")[1:]] == ["1", "1", "2"]
    assert "25.0%" in row and "50.0%" in row and "<td>4</td>" in row
    assert reverse("study_chart_png", args=[study.pk]) in page
    assert 'id="bt-table"' in page
    assert "1 of 1 passed" in page
    lost = _lost(study)
    assert f'id="candidate-{lost.pk}"' in page
    assert reverse("trial_to_curation", args=[lost.pk]) in page
    assert lost.query.thumbnail.url in page and lost.image_b.thumbnail.url in page
    for url in _urls(study)[1:]:
        assert url in page


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_only_admins_see_results_and_downloads(
    role: str, study: Study, request: pytest.FixtureRequest
) -> None:
    client = Client()
    client.force_login(request.getfixturevalue(role))
    for url in _urls(study):
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("trial_to_curation", args=[_lost(study).pk])).status_code == 403
    assert not Group.objects.exists()


def test_an_unknown_study_is_a_404(admin_client: Client) -> None:
    for name in ("study_results", "study_chart_png", "study_answers_csv", "study_answers_json"):
        assert admin_client.get(reverse(name, args=[999])).status_code == 404


def test_the_csv_has_one_row_per_answer_under_the_dictionary_header(
    admin_client: Client, study: Study
) -> None:
    response = admin_client.get(reverse("study_answers_csv", args=[study.pk]))
    assert response.status_code == 200 and response.streaming
    assert "attachment" in response["Content-Disposition"]
    text = _body(response).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == HEADER
    assert len(rows) - 1 == Answer.objects.filter(trial__study=study).count() == 5
    records = [dict(zip(HEADER, row, strict=True)) for row in rows[1:]]
    first = records[0]
    answer = Answer.objects.select_related("trial__query", "participant").get(
        participant__platform_pid=first["platform_pid"], trial_id=int(first["trial_id"])
    )
    assert first["query_sha256"] == answer.trial.query.sha256
    assert first["participant_id"] == str(answer.participant_id)
    # The participant's link token never leaves the database.
    assert answer.participant.token not in text
    # Shown sides follow a_on_left: "right" with A on the left picked dino's image.
    assert (first["a_on_left"], first["left_method"], first["right_method"]) == (
        "true",
        "relsim",
        "dino",
    )
    assert (first["choice"], first["preferred"]) == ("right", "dino")
    assert first["created_at"] == answer.created_at.isoformat()

    dictionary = admin_client.get(reverse("study_data_dictionary", args=[study.pk]))
    assert dictionary.status_code == 200
    for name in HEADER:
        assert f'id="column-{name}"' in dictionary.content.decode()


def test_the_json_parses_and_carries_the_columns(admin_client: Client, study: Study) -> None:
    response = admin_client.get(reverse("study_answers_json", args=[study.pk]))
    assert response.status_code == 200
    data = json.loads(_body(response))
    assert [column["name"] for column in data["columns"]] == HEADER
    assert all(column["description"] for column in data["columns"])
    assert len(data["answers"]) == 5
    assert all(list(row) == HEADER for row in data["answers"])
    assert data["study"]["reference_method"] == "relsim"
    assert {row["response_ms"] for row in data["answers"]} == {1500, 2000, 900}


def test_the_chart_comes_as_png_and_as_a_pdf_download(admin_client: Client, study: Study) -> None:
    png = admin_client.get(reverse("study_chart_png", args=[study.pk]))
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    pdf = admin_client.get(reverse("study_chart_pdf", args=[study.pk]))
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert pdf["Content-Disposition"].startswith("attachment;")


def test_a_study_without_answers_still_renders(admin_client: Client) -> None:
    empty = Study.objects.create(name="empty", reference_method="relsim", baselines=["dino"])
    page = admin_client.get(reverse("study_results", args=[empty.pk]))
    assert page.status_code == 200 and b"No answers yet" in page.content
    png = admin_client.get(reverse("study_chart_png", args=[empty.pk]))
    assert png.content.startswith(b"\x89PNG")
    csv_text = _body(admin_client.get(reverse("study_answers_csv", args=[empty.pk]))).decode()
    assert csv_text.splitlines() == [",".join(HEADER)]


def test_sending_a_trial_to_curation_makes_one_draft_group_once(
    admin_client: Client, study: Study
) -> None:
    lost = _lost(study)
    url = reverse("trial_to_curation", args=[lost.pk])
    response = admin_client.post(url, follow=True)
    assert response.status_code == 200
    group = Group.objects.get()
    assert group.state == Group.State.DRAFT
    assert list(group.members.values_list("image_id", flat=True)) == [
        lost.query_id,
        lost.image_b_id,
    ]
    assert f"trial #{lost.pk}" in group.notes and "pilot" in group.notes
    assert "2 of 3" in group.notes
    page = response.content.decode()
    assert reverse("group_detail", args=[group.pk]) in page
    lost.refresh_from_db()
    assert lost.sent_to_curation
    # Offered once: the trial leaves the list and a second POST makes nothing.
    assert f'id="candidate-{lost.pk}"' not in page
    again = admin_client.post(url, follow=True)
    assert Group.objects.count() == 1
    assert b"already sent" in again.content


def test_catch_trials_and_unknown_trials_cannot_be_sent(admin_client: Client, study: Study) -> None:
    catch = study.trials.get(kind="catch")
    response = admin_client.post(reverse("trial_to_curation", args=[catch.pk]), follow=True)
    assert b"Only A/B trials" in response.content
    assert admin_client.post(reverse("trial_to_curation", args=[99999])).status_code == 404
    assert admin_client.get(reverse("trial_to_curation", args=[catch.pk])).status_code == 405
    assert not Group.objects.exists()
    catch.refresh_from_db()
    assert not catch.sent_to_curation
