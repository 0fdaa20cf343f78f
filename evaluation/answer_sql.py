"""The answer path in SQL: storing one answer and finding the next open trial. Each runs as
one statement; they are the study's hottest path (hundreds of answers a second when a
study goes live), where building the queries through the ORM cost more than running them.
Plain SQL that PostgreSQL and SQLite (3.35 and newer) both read."""

from __future__ import annotations

from datetime import datetime

from django.db import connection

from evaluation.models import Answer, Assignment, Participant, Study, Trial


def _names() -> dict[str, str]:
    quote = connection.ops.quote_name
    return {
        "answer": quote(Answer._meta.db_table),
        "assignment": quote(Assignment._meta.db_table),
        "trial": quote(Trial._meta.db_table),
        "participant": quote(Participant._meta.db_table),
        "study": quote(Study._meta.db_table),
    }


# What the participant's pages read of the study; its other fields load when touched.
_STUDY_WANTED = {"id", "slug", "is_open", "resume_hours", "completion_code", "screenout_code"}
# In the model's own order, as Model.from_db takes them.
_STUDY_FIELDS = [f.attname for f in Study._meta.concrete_fields if f.attname in _STUDY_WANTED]


def participant_with_study(token: str) -> Participant | None:
    """The participant by token, with the study fields their pages need, in one statement
    (a raw query: the participant's columns still pass through the model's converters)."""
    names = _names()
    study_columns = ", ".join(f"s.{field} AS joined_study_{field}" for field in _STUDY_FIELDS)
    sql = (
        f"SELECT p.*, {study_columns} FROM {names['participant']} p "
        f"JOIN {names['study']} s ON s.id = p.study_id WHERE p.token = %s"
    )
    found = list(Participant.objects.raw(sql, [token]))
    if not found:
        return None
    participant = found[0]
    values = [getattr(participant, f"joined_study_{field}") for field in _STUDY_FIELDS]
    # SQLite reads booleans back as 0 and 1.
    values[_STUDY_FIELDS.index("is_open")] = bool(values[_STUDY_FIELDS.index("is_open")])
    participant.study = Study.from_db(connection.alias, _STUDY_FIELDS, values)
    return participant


def insert_answer(
    *,
    participant_id: int,
    position: int,
    choice: str,
    response_ms: int | None,
    viewport: str,
    now: datetime,
) -> bool:
    """Store the answer to the participant's trial at `position`, unless that trial already
    has their answer: the first one stands. True when a row was written. The preferred
    method follows from the side chosen and where the trial's image A was shown."""
    names = _names()
    sql = (
        f"INSERT INTO {names['answer']} (participant_id, trial_id, position, choice, "
        "a_on_left, preferred, response_ms, viewport, created_at) "
        "SELECT a.participant_id, a.trial_id, a.position, %s, a.a_on_left, "
        "CASE WHEN %s = 'same' THEN '' WHEN (%s = 'left') = a.a_on_left "
        "THEN t.method_a ELSE t.method_b END, %s, %s, %s "
        f"FROM {names['assignment']} a JOIN {names['trial']} t ON t.id = a.trial_id "
        "WHERE a.participant_id = %s AND a.position = %s "
        # No conflict target: a resent answer collides on (participant, trial) and on
        # (participant, position) alike, and whichever index sees it first must not raise.
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    stamp = connection.ops.adapt_datetimefield_value(now)
    params = [choice, choice, choice, response_ms, viewport, stamp, participant_id, position]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


def answered_positions(participant_id: int) -> set[int]:
    """The places in the participant's sequence that have an answer (an index scan of at
    most a few hundred integers, whatever the table's statistics say)."""
    sql = f"SELECT position FROM {_names()['answer']} WHERE participant_id = %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [participant_id])
        return {int(position) for (position,) in cursor.fetchall()}
