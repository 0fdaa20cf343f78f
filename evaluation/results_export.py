"""A study's raw answers for analysis elsewhere: one row per answer, as CSV or JSON, with a
data dictionary that names and explains every column."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from evaluation.models import Answer, Study


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    # The answer's values() row -> this column's value (JSON types; CSV writes them as text).
    value: Callable[[dict[str, Any]], Any]


def _field(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row[name]


def _shown(row: dict[str, Any], left: bool) -> str:
    a_side = row["a_on_left"] == left
    return str(row["trial__method_a"] if a_side else row["trial__method_b"])


COLUMNS: tuple[Column, ...] = (
    Column("study_id", "integer", "The study's id.", _field("trial__study_id")),
    Column(
        "participant_id",
        "integer",
        "The participant's id in this database (their link token is never exported).",
        _field("participant_id"),
    ),
    Column(
        "platform_pid",
        "string",
        "The recruiting platform's participant id (Prolific PROLIFIC_PID); empty if none.",
        _field("participant__platform_pid"),
    ),
    Column(
        "platform_study_id",
        "string",
        "The platform's study id (Prolific STUDY_ID); empty if none.",
        _field("participant__platform_study_id"),
    ),
    Column(
        "platform_session_id",
        "string",
        "The platform's session id (Prolific SESSION_ID); empty if none.",
        _field("participant__platform_session_id"),
    ),
    Column("trial_id", "integer", "The trial's id.", _field("trial_id")),
    Column(
        "position",
        "integer",
        "The trial's place in the participant's sequence, from 0 (catch trials included).",
        _field("position"),
    ),
    Column(
        "trial_kind",
        "string",
        '"ab": the reference method\'s top-1 (A) against a baseline\'s (B); "catch": A is '
        "a member of the query's own group, B an unrelated image, and A is the expected answer.",
        _field("trial__kind"),
    ),
    Column("query_id", "integer", "The query image's id.", _field("trial__query_id")),
    Column(
        "query_sha256",
        "string",
        "sha256 of the query image's stored PNG.",
        _field("trial__query__sha256"),
    ),
    Column("image_a_id", "integer", "Image A's id.", _field("trial__image_a_id")),
    Column(
        "image_a_sha256",
        "string",
        "sha256 of image A's stored PNG.",
        _field("trial__image_a__sha256"),
    ),
    Column("image_b_id", "integer", "Image B's id.", _field("trial__image_b_id")),
    Column(
        "image_b_sha256",
        "string",
        "sha256 of image B's stored PNG.",
        _field("trial__image_b__sha256"),
    ),
    Column(
        "method_a",
        "string",
        "The method that retrieved image A (the study's reference method in A/B trials).",
        _field("trial__method_a"),
    ),
    Column(
        "method_b",
        "string",
        "The method that retrieved image B (a baseline in A/B trials).",
        _field("trial__method_b"),
    ),
    Column(
        "a_on_left",
        "boolean",
        "Whether image A was shown on the left for this participant (sides are randomised).",
        _field("a_on_left"),
    ),
    Column(
        "left_method",
        "string",
        "The method whose image was shown on the left.",
        lambda row: _shown(row, left=True),
    ),
    Column(
        "right_method",
        "string",
        "The method whose image was shown on the right.",
        lambda row: _shown(row, left=False),
    ),
    Column(
        "choice",
        "string",
        '"left", "right" or "same": the side the participant picked, or neither.',
        _field("choice"),
    ),
    Column(
        "preferred",
        "string",
        'The method of the picked image; empty for "same".',
        _field("preferred"),
    ),
    Column(
        "response_ms",
        "integer or empty",
        "Milliseconds from the trial being shown to the answer, as the browser measured it.",
        _field("response_ms"),
    ),
    Column(
        "viewport",
        "string",
        'The browser window size when answering, "WIDTHxHEIGHT" in CSS pixels; may be empty.',
        _field("viewport"),
    ),
    Column(
        "created_at",
        "ISO 8601 date-time",
        "When the answer was saved (server time, with its UTC offset).",
        lambda row: row["created_at"].isoformat(),
    ),
)

HEADER = [column.name for column in COLUMNS]

_FIELDS = (
    "trial__study_id",
    "participant_id",
    "participant__platform_pid",
    "participant__platform_study_id",
    "participant__platform_session_id",
    "trial_id",
    "position",
    "trial__kind",
    "trial__query_id",
    "trial__query__sha256",
    "trial__image_a_id",
    "trial__image_a__sha256",
    "trial__image_b_id",
    "trial__image_b__sha256",
    "trial__method_a",
    "trial__method_b",
    "a_on_left",
    "choice",
    "preferred",
    "response_ms",
    "viewport",
    "created_at",
)


def answer_rows(study: Study) -> Iterator[dict[str, Any]]:
    """Each answer of the study as {column: value}, read in chunks from one query."""
    rows = (
        Answer.objects.filter(trial__study=study)
        .order_by("created_at", "id")
        .values(*_FIELDS)
        .iterator(chunk_size=2000)
    )
    for row in rows:
        yield {column.name: column.value(row) for column in COLUMNS}


class _Echo:
    """A file-like object whose write() hands the line back, for csv.writer to stream."""

    def write(self, value: str) -> str:
        return value


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def csv_lines(study: Study) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(HEADER)
    for row in answer_rows(study):
        yield writer.writerow([_csv_value(row[name]) for name in HEADER])


def data_dictionary() -> list[dict[str, str]]:
    return [
        {"name": column.name, "type": column.type, "description": column.description}
        for column in COLUMNS
    ]


def json_chunks(study: Study) -> Iterator[str]:
    """The JSON document in pieces, so a large study never sits in memory as one string."""
    head = {
        "study": {
            "id": study.pk,
            "name": study.name,
            "reference_method": study.reference_method,
            "baselines": list(study.baselines),
        },
        "columns": data_dictionary(),
    }
    yield json.dumps(head)[:-1] + ', "answers": ['
    for number, row in enumerate(answer_rows(study)):
        yield ("," if number else "") + "\n" + json.dumps(row)
    yield "\n]}\n"
