"""The answer path's SQL on PostgreSQL: one prepared statement per answer, kept on the
connection, and a pooler-friendly way to turn preparing off."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from evaluation.models import Answer, Participant
from evaluation.study_services import participant_start
from tests.evaluation.study_data import open_study

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's"
    ),
]


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_an_answer_is_one_prepared_statement(png_factory: Any) -> None:
    study = open_study(png_factory, trials_per_participant=3, catch_per_participant=0)
    token = participant_start(study=study, text=study.texts.get(), platform={}).participant.token
    before = _prepared()
    url = reverse("participant_answer", args=[token])
    for position in (0, 1):
        reply = Client().post(
            url, {"position": position, "choice": "left"}, HTTP_ACCEPT="application/json"
        )
        assert reply.json()["position"] == position + 1
    added = [statement for statement in _prepared() if statement not in before]
    # Both answers ran the one statement that reads, inserts and finishes.
    assert len(added) == 1, added
    assert "INSERT INTO" in added[0] and "UPDATE" in added[0] and "WITH p AS" in added[0]
    assert Answer.objects.filter(participant__token=token).count() == 2
    assert Participant.objects.get(token=token).finished_at is None
