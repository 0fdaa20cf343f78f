"""The answer path in SQL: finding a participant with where they stand, and storing one
answer. Each is one statement; they are the study's hottest path (hundreds of answers a
second when a study goes live), where building the queries through the ORM cost more than
running them. Plain SQL that PostgreSQL and SQLite (3.35 and newer) both read.

On PostgreSQL both run as prepared statements on the request's connection: parsing and
planning them again for every answer cost the database twice the time of running them.
(A pooler in transaction mode, such as PgBouncer's, would need its prepared-statement
support turned on.)"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from django.db import connection
from django.db.models import Field

from evaluation.models import Answer, Assignment, Participant, Study, Trial

# What the participant's pages read of the study; its other fields load when touched.
_STUDY_WANTED = {"id", "slug", "is_open", "resume_hours", "completion_code", "screenout_code"}
_STUDY_FIELDS: list[Field[Any, Any]] = [
    f for f in Study._meta.concrete_fields if f.attname in _STUDY_WANTED
]
# Named one by one rather than `p.*`: a prepared statement must not change shape under a
# migration that adds a column.
_PARTICIPANT_FIELDS: list[Field[Any, Any]] = list(Participant._meta.concrete_fields)

Converter = Callable[[Any, Any, Any], Any]
# Per database, model and field: the column expression and its converters, worked out once.
_CONVERTERS: dict[tuple[str, type[Any], str], tuple[Any, list[Converter]]] = {}


def _table(model: type[Any]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _columns(alias: str, fields: list[Field[Any, Any]]) -> str:
    return ", ".join(f"{alias}.{connection.ops.quote_name(f.attname)}" for f in fields)


def _run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Execute on the request's connection and return the rows: a prepared statement on
    PostgreSQL, Django's cursor elsewhere."""
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        # psycopg's own cursor binds on the server, which preparing needs; Django's binds
        # on the client. Same connection, so same transaction and adapters.
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, prepare=True)
            return cursor.fetchall() if cursor.description else []
    with connection.cursor() as django_cursor:
        django_cursor.execute(sql, params)
        return list(django_cursor.fetchall()) if django_cursor.description else []


def _converted(fields: list[Field[Any, Any]], values: Sequence[Any], model: type[Any]) -> list[Any]:
    """Values as the ORM would load them (SQLite hands back text timestamps and 0/1)."""
    out = []
    for field, value in zip(fields, values, strict=True):
        key = (connection.alias, model, field.attname)
        if key not in _CONVERTERS:
            column = field.get_col(model._meta.db_table)
            converters = connection.ops.get_db_converters(column)
            _CONVERTERS[key] = (column, converters + column.get_db_converters(connection))
        column, converters = _CONVERTERS[key]
        for convert in converters:
            value = convert(value, column, connection)
        out.append(value)
    return out


class Found(NamedTuple):
    participant: Participant
    # Trials answered. Answers fill a participant's sequence from its start (an answer is
    # taken only for the first open trial), so this is also the first open position.
    answered: int


def participant_with_study(token: str) -> Found | None:
    """The participant by token, with the study fields their pages need and how many trials
    they have answered, in one statement."""
    sql = (
        f"SELECT {_columns('p', _PARTICIPANT_FIELDS)}, {_columns('s', _STUDY_FIELDS)}, "
        f"(SELECT MAX(an.position) FROM {_table(Answer)} an WHERE an.participant_id = p.id) "
        f"FROM {_table(Participant)} p JOIN {_table(Study)} s ON s.id = p.study_id "
        "WHERE p.token = %s"
    )
    rows = _run(sql, [token])
    if not rows:
        return None
    row = rows[0]
    split = len(_PARTICIPANT_FIELDS)
    participant = Participant.from_db(
        connection.alias,
        [f.attname for f in _PARTICIPANT_FIELDS],
        _converted(_PARTICIPANT_FIELDS, row[:split], Participant),
    )
    participant.study = Study.from_db(
        connection.alias,
        [f.attname for f in _STUDY_FIELDS],
        _converted(_STUDY_FIELDS, row[split:-1], Study),
    )
    return Found(participant, _count_from_last(row[-1]))


def answered_count(participant_id: int) -> int:
    """How many trials the participant has answered (see Found.answered)."""
    sql = f"SELECT MAX(position) FROM {_table(Answer)} WHERE participant_id = %s"
    (last,) = _run(sql, [participant_id])[0]
    return _count_from_last(last)


def _count_from_last(last: int | None) -> int:
    """Answers fill positions 0, 1, ... in order, so the last answered one gives the count."""
    return 0 if last is None else int(last) + 1


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
    sql = (
        f"INSERT INTO {_table(Answer)} (participant_id, trial_id, position, choice, "
        "a_on_left, preferred, response_ms, viewport, created_at) "
        "SELECT a.participant_id, a.trial_id, a.position, %s, a.a_on_left, "
        "CASE WHEN %s = 'same' THEN '' WHEN (%s = 'left') = a.a_on_left "
        "THEN t.method_a ELSE t.method_b END, CAST(%s AS INTEGER), %s, %s "
        f"FROM {_table(Assignment)} a JOIN {_table(Trial)} t ON t.id = a.trial_id "
        "WHERE a.participant_id = %s AND a.position = %s "
        # No conflict target: a resent answer collides on (participant, trial) and on
        # (participant, position) alike, and whichever index sees it first must not raise.
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    stamp = connection.ops.adapt_datetimefield_value(now)
    params = [choice, choice, choice, response_ms, viewport, stamp, participant_id, position]
    return bool(_run(sql, params))
