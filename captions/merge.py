"""Word-level three-way merge of two edits of one caption made from the same base text."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Conflict:
    """One base span that both sides changed differently."""

    base: str
    theirs: str
    yours: str


@dataclass(frozen=True)
class MergeResult:
    """The merged text, its conflicts, and the text in pieces (conflicting pieces marked)."""

    text: str
    conflicts: list[Conflict] = field(default_factory=list)
    pieces: list[tuple[str, bool]] = field(default_factory=list)


@dataclass(frozen=True)
class _Hunk:
    """Base words [start, end) replaced by `words` on one side."""

    start: int
    end: int
    words: list[str]
    side: str


THEIRS, YOURS = "theirs", "yours"


def _hunks(base: list[str], other: list[str], side: str) -> list[_Hunk]:
    matcher = difflib.SequenceMatcher(a=base, b=other, autojunk=False)
    return [
        _Hunk(a0, a1, other[b0:b1], side)
        for op, a0, a1, b0, b1 in matcher.get_opcodes()
        if op != "equal"
    ]


def _overlap(a: _Hunk, b: _Hunk) -> bool:
    # Two insertions collide only at the same place; an insertion collides with a change
    # only strictly inside it (at either edge the order of the two is unambiguous).
    if a.start == a.end and b.start == b.end:
        return a.start == b.start
    if a.start == a.end:
        return b.start < a.start < b.end
    if b.start == b.end:
        return a.start < b.start < a.end
    return max(a.start, b.start) < min(a.end, b.end)


def _clusters(hunks: list[_Hunk]) -> list[list[_Hunk]]:
    clusters: list[list[_Hunk]] = []
    for hunk in sorted(hunks, key=lambda h: (h.start, h.end, h.side)):
        if clusters and any(_overlap(hunk, other) for other in clusters[-1]):
            clusters[-1].append(hunk)
        else:
            clusters.append([hunk])
    return clusters


def _apply(base: list[str], start: int, end: int, hunks: list[_Hunk]) -> list[str]:
    """base[start:end] with one side's hunks (all inside that span) applied."""
    out: list[str] = []
    at = start
    for hunk in sorted(hunks, key=lambda h: (h.start, h.end)):
        out += base[at : hunk.start] + hunk.words
        at = hunk.end
    return out + base[at:end]


def merge_words(base: str, theirs: str, yours: str) -> MergeResult:
    """Both sides' edits of `base`; where they changed the same words differently, the
    merged text keeps theirs then yours and the span is reported as a conflict."""
    base_words = base.split()
    hunks = _hunks(base_words, theirs.split(), THEIRS) + _hunks(base_words, yours.split(), YOURS)
    pieces: list[tuple[str, bool]] = []
    conflicts: list[Conflict] = []
    merged: list[str] = []
    at = 0

    def emit(words: list[str], conflict: bool) -> None:
        merged.extend(words)
        if words and pieces and not conflict and not pieces[-1][1]:
            pieces[-1] = (f"{pieces[-1][0]} {' '.join(words)}", False)
        elif words:
            pieces.append((" ".join(words), conflict))

    for cluster in _clusters(hunks):
        start = min(h.start for h in cluster)
        end = max(h.end for h in cluster)
        emit(base_words[at:start], False)
        at = end
        theirs_part = _apply(base_words, start, end, [h for h in cluster if h.side == THEIRS])
        yours_part = _apply(base_words, start, end, [h for h in cluster if h.side == YOURS])
        sides = {h.side for h in cluster}
        if len(sides) == 1:
            emit(theirs_part if sides == {THEIRS} else yours_part, False)
        elif theirs_part == yours_part:
            emit(theirs_part, False)
        else:
            conflicts.append(
                Conflict(
                    base=" ".join(base_words[start:end]),
                    theirs=" ".join(theirs_part),
                    yours=" ".join(yours_part),
                )
            )
            emit(theirs_part + yours_part, True)
    emit(base_words[at:], False)
    return MergeResult(text=" ".join(merged), conflicts=conflicts, pieces=pieces)
