"""The answer path in SQL: finding a participant with where they stand, and storing one
answer. They are the study's hottest path (hundreds of answers a second when a study goes
live), where building the queries through the ORM cost more than running them. Each
statement is written once per database, in plain SQL that PostgreSQL and SQLite (3.35 and
newer) both read, except the one-statement answer, which is PostgreSQL's.

On PostgreSQL they run as prepared statements on the request's connection: parsing and
planning them again for every answer cost the database twice the time of running them.
(A pooler in transaction mode, such as PgBouncer's, would need its prepared-statement
support turned on.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

import psycopg
from django.db import connection, transaction
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
# The participant's state as _state_sql selects it.
_STORED_STATE_FIELDS: list[Field[Any, Any]] = [
    Participant._meta.get_field("id"),
    Participant._meta.get_field("trial_count"),
    Study._meta.get_field("is_open"),
    Participant._meta.get_field("finished_at"),
    Participant._meta.get_field("started_at"),
    Study._meta.get_field("resume_hours"),
    Answer._meta.get_field("position"),
]

Converter = Callable[[Any, Any, Any], Any]
# Per database and fields selected: where in the row a value needs converting, with the
# column expression and converters for it; worked out once (on PostgreSQL, nowhere).
_PLANS: dict[tuple[str, int], list[tuple[int, Any, list[Converter]]]] = {}


def _table(model: type[Any]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _columns(alias: str, fields: list[Field[Any, Any]]) -> str:
    return ", ".join(f"{alias}.{connection.ops.quote_name(str(f.column))}" for f in fields)


def _run(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Execute on the request's connection and return the rows: a prepared statement on
    PostgreSQL, Django's cursor elsewhere."""
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        # psycopg's own cursor binds on the server, which preparing needs; Django's binds
        # on the client. Same connection, so same transaction and adapters.
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, prepare=True)
            # Whether it returned rows, without building `description` (a column object each).
            result = cursor.pgresult
            return cursor.fetchall() if result is not None and result.nfields else []
    with connection.cursor() as django_cursor:
        django_cursor.execute(sql, params)
        return list(django_cursor.fetchall()) if django_cursor.description else []


def _converted(fields: list[Field[Any, Any]], values: Sequence[Any]) -> list[Any]:
    """Values as the ORM would load them (SQLite hands back text timestamps and 0/1).
    `fields` is one of this module's constant lists, so its identity names it."""
    key = (connection.alias, id(fields))
    plan = _PLANS.get(key)
    if plan is None:
        plan = []
        for index, field in enumerate(fields):
            column = field.get_col(field.model._meta.db_table)
            converters = connection.ops.get_db_converters(column)
            converters += column.get_db_converters(connection)
            if converters:
                plan.append((index, column, converters))
        _PLANS[key] = plan
    out = list(values)
    for index, column, converters in plan:
        for convert in converters:
            out[index] = convert(out[index], column, connection)
    return out


def _last_position(participant: str) -> str:
    """A subquery: the participant's last answered position, NULL before their first."""
    return (
        f"(SELECT MAX(an.position) FROM {_table(Answer)} an "
        f"WHERE an.participant_id = {participant})"
    )


def _count_from_last(last: int | None) -> int:
    """Answers fill positions 0, 1, ... in order, so the last answered one gives the count."""
    return 0 if last is None else int(last) + 1


def _from_participant_and_study() -> str:
    return (
        f"FROM {_table(Participant)} p JOIN {_table(Study)} s ON s.id = p.study_id "
        "WHERE p.token = %(token)s"
    )


# --- the participant's pages ----------------------------------------------------------------


class Found(NamedTuple):
    participant: Participant
    # Trials answered. Answers fill a participant's sequence from its start (an answer is
    # taken only for the first open trial), so this is also the first open position.
    answered: int


@cache
def _participant_sql(vendor: str) -> str:
    return (
        f"SELECT {_columns('p', _PARTICIPANT_FIELDS)}, {_columns('s', _STUDY_FIELDS)}, "
        f"{_last_position('p.id')} {_from_participant_and_study()}"
    )


def participant_with_study(token: str) -> Found | None:
    """The participant by token, with the study fields their pages need and how many trials
    they have answered, in one statement."""
    rows = _run(_participant_sql(connection.vendor), {"token": token})
    if not rows:
        return None
    row = rows[0]
    split = len(_PARTICIPANT_FIELDS)
    participant = Participant.from_db(
        connection.alias,
        [f.attname for f in _PARTICIPANT_FIELDS],
        _converted(_PARTICIPANT_FIELDS, row[:split]),
    )
    participant.study = Study.from_db(
        connection.alias,
        [f.attname for f in _STUDY_FIELDS],
        _converted(_STUDY_FIELDS, row[split:-1]),
    )
    return Found(participant, _count_from_last(row[-1]))


@cache
def _answered_sql(vendor: str) -> str:
    return f"SELECT {_last_position('%(participant)s')}"


def answered_count(participant_id: int) -> int:
    """How many trials the participant has answered (see Found.answered)."""
    (last,) = _run(_answered_sql(connection.vendor), {"participant": participant_id})[0]
    return _count_from_last(last)


# --- storing an answer ----------------------------------------------------------------------


class AnswerState(NamedTuple):
    """Where a participant stood when their answer arrived, by their study's rules."""

    participant_id: int
    trial_count: int
    is_open: bool
    finished: bool
    # Past the study's resume_hours since they started (a finished session is not resumed).
    expired: bool
    answered: int


class Answering(NamedTuple):
    token: str
    position: int
    choice: str
    response_ms: int | None
    viewport: str
    now: datetime


class Stored(NamedTuple):
    state: AnswerState
    # Whether this request wrote the answer, and whether the participant has now finished:
    # this request's answer may have been their last.
    created: bool
    finished: bool


def session_expired(started_at: datetime, resume_hours: int, now: datetime) -> bool:
    """Past the study's resume_hours since the participant started. The PostgreSQL answer
    statement says the same in SQL (its `expired` column)."""
    return now - started_at > timedelta(hours=resume_hours)


def answer_may_be_taken(state: AnswerState, position: int) -> bool:
    """An answer is taken only for the first open trial of an open study, from a participant
    who has not finished and whose session has not expired. The PostgreSQL statement says
    the same in SQL (_MAY_ANSWER)."""
    return (
        position == state.answered
        and position < state.trial_count
        and state.is_open
        and not state.finished
        and not state.expired
    )


_MAY_ANSWER = (
    "COALESCE(p.last, -1) + 1 = CAST(%(position)s AS INTEGER) AND p.is_open "
    "AND NOT p.finished AND NOT p.expired"
)


@cache
def _state_sql(vendor: str) -> str:
    """The state's columns as stored (SQLite; the flags are worked out in Python)."""
    return (
        "SELECT p.id, p.trial_count, s.is_open, p.finished_at, p.started_at, s.resume_hours, "
        f"{_last_position('p.id')} {_from_participant_and_study()}"
    )


def _state_from_stored(row: Sequence[Any], now: datetime) -> AnswerState:
    participant_id, trial_count, is_open, finished_at, started_at, hours, last = _converted(
        _STORED_STATE_FIELDS, row
    )
    return AnswerState(
        participant_id,
        trial_count,
        is_open,
        finished=finished_at is not None,
        expired=session_expired(started_at, hours, now),
        answered=_count_from_last(last),
    )


def _insert_answer(source: str, where: str) -> str:
    """INSERT of the answer to the participant's assignment at the posted position, for the
    participant `p` in `source`, where `where` holds. The preferred method follows from the
    side chosen and where the trial's image A was shown."""
    return (
        f"INSERT INTO {_table(Answer)} (participant_id, trial_id, position, choice, "
        "a_on_left, preferred, response_ms, viewport, created_at) "
        # Cast where used more than once: PostgreSQL must deduce one type per parameter.
        "SELECT a.participant_id, a.trial_id, a.position, CAST(%(choice)s AS TEXT), "
        "a.a_on_left, CASE WHEN CAST(%(choice)s AS TEXT) = 'same' THEN '' "
        "WHEN (CAST(%(choice)s AS TEXT) = 'left') = a.a_on_left "
        "THEN t.method_a ELSE t.method_b END, CAST(%(response_ms)s AS INTEGER), "
        "%(viewport)s, %(now)s "
        f"FROM {source} JOIN {_table(Assignment)} a ON a.participant_id = p.id "
        f"JOIN {_table(Trial)} t ON t.id = a.trial_id "
        f"WHERE a.position = CAST(%(position)s AS INTEGER) AND {where} "
        # No conflict target: a resent answer collides on (participant, trial) and on
        # (participant, position) alike, and whichever index sees it first must not raise.
        "ON CONFLICT DO NOTHING RETURNING position"
    )


def _finish(where: str) -> str:
    return (
        f"UPDATE {_table(Participant)} SET finished_at = %(now)s "
        f"WHERE finished_at IS NULL AND {where}"
    )


@cache
def _store_sql_postgresql() -> str:
    """Read the participant, store the answer if it may be taken, and mark them finished if
    it was their last: one statement and one round trip, all or nothing. Every part reads
    the snapshot from before the insert, so `last` is where they stood when it arrived. The
    state comes back as flags and counts, which load faster than timestamps."""
    state = (
        "SELECT p.id, p.trial_count, s.is_open, p.finished_at IS NOT NULL AS finished, "
        "p.started_at < %(now)s - make_interval(hours => s.resume_hours) AS expired, "
        f"{_last_position('p.id')} AS last {_from_participant_and_study()}"
    )
    last_one = "CAST(%(position)s AS INTEGER) + 1 >= (SELECT trial_count FROM p)"
    return (
        f"WITH p AS ({state}), "
        f"stored AS ({_insert_answer('p', _MAY_ANSWER)}), "
        "done AS ("
        + _finish(f"id = (SELECT id FROM p) AND EXISTS (SELECT 1 FROM stored) AND {last_one}")
        + " RETURNING id) "
        "SELECT p.id, p.trial_count, p.is_open, p.finished, p.expired, p.last, "
        "EXISTS (SELECT 1 FROM stored), p.finished OR EXISTS (SELECT 1 FROM done) FROM p"
    )


@cache
def _insert_sql(vendor: str) -> str:
    return _insert_answer(f"{_table(Participant)} p", "p.id = %(participant)s")


@cache
def _finish_sql(vendor: str) -> str:
    return _finish("id = %(participant)s")


def _params(answering: Answering) -> dict[str, Any]:
    params = answering._asdict()
    params["now"] = connection.ops.adapt_datetimefield_value(answering.now)
    params["viewport"] = answering.viewport[:20]
    return params


def store_answer(answering: Answering) -> Stored | None:
    """Store the answer to the participant's trial at `answering.position` if it may be
    taken (answer_may_be_taken), unless that trial already has their answer: the first one
    stands. None when no participant has the token."""
    params = _params(answering)
    if connection.vendor == "postgresql":
        rows = _run(_store_sql_postgresql(), params)
        if not rows:
            return None
        pid, count, is_open, finished_before, expired, last, created, finished = rows[0]
        state = AnswerState(pid, count, is_open, finished_before, expired, _count_from_last(last))
        return Stored(state, created, finished)
    # Elsewhere (SQLite): read, then write what the state allows.
    rows = _run(_state_sql(connection.vendor), params)
    if not rows:
        return None
    state = _state_from_stored(rows[0], answering.now)
    if not answer_may_be_taken(state, answering.position):
        return Stored(state, False, state.finished)
    params["participant"] = state.participant_id
    with transaction.atomic():
        created = bool(_run(_insert_sql(connection.vendor), params))
        finished = created and answering.position + 1 >= state.trial_count
        if finished:
            _run(_finish_sql(connection.vendor), params)
    return Stored(state, created, finished)
