"""The automatic judge's prompt (one number 0-10 for how strongly two images share the same
underlying logic, visual and semantic likeness ignored) and the strict parser of its replies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "JUDGE_INSTRUCTIONS",
    "JUDGE_SYSTEM",
    "SCORE_MAX",
    "SCORE_MIN",
    "ParsedScore",
    "ReplyStatus",
    "parse_score",
]

SCORE_MIN = 0.0
SCORE_MAX = 10.0

JUDGE_SYSTEM = "You compare two images by the logic they share and answer with one number."

QUERY_LABEL = "Image 1 (the query):"
CANDIDATE_LABEL = "Image 2 (the candidate retrieved for it):"
JUDGE_INSTRUCTIONS = (
    "How strongly do these two images share the same underlying logic? By logic we mean the "
    "idea that organises a scene: a structure, a relation between its parts, a function, a "
    "transformation or a pattern (for instance layers wrapped around a core, something small "
    "imitating something large, parts lined up by size).\n"
    "Leave visual likeness out of it (colours, textures, composition, style), and leave "
    "semantic likeness out of it too (the same kind of object, animal, place or topic): two "
    "pictures of the same thing may share no logic at all, and two pictures of unrelated "
    "things may share all of it.\n"
    "Reply with a single number from 0 (no shared logic) to 10 (exactly the same logic) and "
    "nothing else."
)

ReplyStatus = Literal["ok", "refused", "unparsable", "out_of_range"]


@dataclass(frozen=True)
class ParsedScore:
    status: ReplyStatus
    score: float | None  # the number read (also when out of range), None otherwise
    reason: str = ""


_NUMBER = r"[-+]?\d+(?:[.,]\d+)?"
# "7/10", "7 / 10", "7 out of 10": the score written against its scale.
_AGAINST_SCALE = re.compile(rf"({_NUMBER})\s*(?:/|out\s+of)\s*10(?![\d.])", re.IGNORECASE)
# "score: 7", "Rating - 7", "I'd rate it 7", "score of 7".
_LABELLED = re.compile(
    rf"\b(?:score|rating|rate(?:\s+(?:it|this|them|these|the\s+pair))?|grade)"
    rf"\s*(?:is|of|=|:|-|\u2013|as)?\s*\**\s*({_NUMBER})",
    re.IGNORECASE,
)
# Mentions of the scale itself ("on a 0-10 scale", "between 0 and 10") are not answers.
_SCALE_MENTION = re.compile(
    r"(?<![\d.])0\s*(?:-|\u2013|\u2014|to|and|through)\s*10(?![\d.])", re.IGNORECASE
)
_ANY_NUMBER = re.compile(rf"(?<![\w.]){_NUMBER}(?![\w])")
_REFUSAL = re.compile(
    r"\b(?:i\s*(?:'m|am)\s+sorry|i\s+apologi[sz]e|"
    r"(?:i\s*(?:'m|am)\s+(?:unable|not\s+able)\s+to|i\s+(?:can(?:'|no)?t|cannot|won't|will\s+not)"
    r"|unable\s+to)\s+(?:help|assist|comply|evaluate|rate|score|compare|provide|determine|"
    r"view|see|access|analy[sz]e|judge|do\s+that|fulfil))",
    re.IGNORECASE,
)
_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}


def _value(text: str) -> float:
    return float(text.replace(",", "."))


def _distinct(values: list[float]) -> list[float]:
    return sorted(set(values))


def _classify(value: float) -> ParsedScore:
    if SCORE_MIN <= value <= SCORE_MAX:
        return ParsedScore("ok", value)
    return ParsedScore("out_of_range", value, f"{value:g} is outside [0, 10]")


def parse_score(reply: str | None) -> ParsedScore:
    """Read one score from a judge's reply, never guessing.

    Tried in order: a number written against the scale ("7/10"), a labelled number
    ("Score: 7"), a reply that is just a number or a number word, then the only number in the
    reply. Several different candidates at the first tier that has any -> unparsable; a reply
    with no explicit score that reads as a refusal -> refused."""
    if reply is None or not reply.strip():
        return ParsedScore("unparsable", None, "empty reply")
    text = reply.replace("**", "").replace("`", "").replace("\u2019", "'").strip()
    refusal = _REFUSAL.search(text) is not None

    for tier, pattern in (("against the scale", _AGAINST_SCALE), ("labelled", _LABELLED)):
        values = _distinct([_value(m.group(1)) for m in pattern.finditer(text)])
        if len(values) == 1:
            return _classify(values[0])
        if len(values) > 1:
            return ParsedScore("unparsable", None, f"several {tier} scores: {values}")

    bare = text.strip(" .!\"'()[]")
    if re.fullmatch(_NUMBER, bare):
        return _classify(_value(bare))
    if bare.lower() in _WORDS:
        return _classify(float(_WORDS[bare.lower()]))
    if refusal:
        return ParsedScore("refused", None, "the reply declines to score")

    loose = _SCALE_MENTION.sub(" ", text)
    values = _distinct([_value(m.group(0)) for m in _ANY_NUMBER.finditer(loose)])
    if len(values) == 1:
        return _classify(values[0])
    if values:
        return ParsedScore("unparsable", None, f"several numbers: {values}")
    return ParsedScore("unparsable", None, "no number in the reply")
