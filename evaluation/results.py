"""A study's results, computed from its stored answers only, and the way back from results to
curation: trials where people preferred a baseline become draft group candidates."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction

from core.splits import Split
from curation.models import Group
from curation.services import group_create
from evaluation.models import Answer, Participant, Study, Trial
from evaluation.stats import (
    ABRow,
    Agreement,
    Comparison,
    Proportion,
    Strength,
    ab_table,
    bradley_terry,
    krippendorff_alpha,
    participant_flags,
    position_bias,
    proportion,
)

# The category of a "same" answer when raters are compared: a tie is an answer of its own.
SAME = "same"
BOOTSTRAP = 1000
# Bradley-Terry with 1000 resamples takes seconds on a paper-size study; its result is kept
# until an answer is added or removed.
_BT_CACHE_SECONDS = 24 * 3600

_ANSWER_FIELDS = (
    "id",
    "participant_id",
    "trial_id",
    "trial__kind",
    "trial__method_a",
    "trial__method_b",
    "choice",
    "a_on_left",
    "response_ms",
    "participant__excluded",
)


@dataclass(frozen=True)
class _Answer:
    id: int
    participant: int
    trial: int
    kind: str
    method_a: str
    method_b: str
    choice: str
    a_on_left: bool
    response_ms: int | None
    excluded: bool  # the participant was left out by a researcher

    @property
    def picked_a(self) -> bool | None:
        """Whether the answer picked image A; None for "same". Taken from the side clicked
        and where A was shown, the facts the participant's browser reported."""
        if self.choice == Answer.Choice.SAME:
            return None
        return (self.choice == Answer.Choice.LEFT) == self.a_on_left

    @property
    def winner(self) -> str | None:
        picked = self.picked_a
        if picked is None:
            return None
        return self.method_a if picked else self.method_b


def _answers(study: Study) -> list[_Answer]:
    rows = Answer.objects.filter(trial__study=study).order_by("id").values_list(*_ANSWER_FIELDS)
    return [_Answer(*row) for row in rows]


def _comparisons(answers: Iterable[_Answer]) -> list[Comparison]:
    return [
        Comparison(answer.method_a, answer.method_b, answer.winner)
        for answer in answers
        if answer.kind == Trial.Kind.AB
    ]


@dataclass(frozen=True)
class ParticipantRow:
    """One participant's answers, times and the reasons to look twice at them. Flags are
    for a person to judge: only a researcher's exclusion drops anyone's answers."""

    id: int
    platform_pid: str
    started_at: datetime
    finished_at: datetime | None
    excluded: bool
    answers: int
    total_ms: int
    median_ms: float | None
    catch: Proportion
    speeder: bool
    one_key: bool
    top_side: str | None

    @property
    def failed_catch(self) -> int:
        return self.catch.total - self.catch.count

    @property
    def flags(self) -> list[str]:
        found = []
        if self.speeder:
            found.append("speeder")
        if self.one_key:
            found.append(f"one key ({self.top_side})")
        if self.failed_catch:
            found.append(f"failed {self.failed_catch} catch trial(s)")
        return found


@dataclass(frozen=True)
class Candidate:
    """An A/B trial whose raters clearly preferred the baseline's image."""

    trial: Trial
    answers: int
    baseline_votes: int
    reference_votes: int
    ties: int


@dataclass(frozen=True)
class StudyResults:
    study: Study
    reference: str
    baselines: list[str]
    trials: dict[str, int]
    answers: int
    ab_answers: int
    catch_answers: int
    ab_rows: list[ABRow]
    strengths: list[Strength]
    position: Proportion
    catch: Proportion
    participants: list[ParticipantRow]
    agreement: Agreement
    candidates: list[Candidate]
    already_sent: int
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> int:
        return sum(bool(row.flags) for row in self.participants if not row.excluded)

    @property
    def counted_participants(self) -> int:
        return sum(not row.excluded for row in self.participants)

    @property
    def excluded_participants(self) -> int:
        return sum(row.excluded for row in self.participants)


def study_ab_rows(study: Study) -> list[ABRow]:
    """The paper's table alone (the chart needs nothing else): one query."""
    return _ab_rows(study, [a for a in _answers(study) if not a.excluded])


def _ab_rows(study: Study, answers: Sequence[_Answer]) -> list[ABRow]:
    return ab_table(
        _comparisons(answers), reference=study.reference_method, baselines=study.baselines
    )


def _methods(study: Study, comparisons: Sequence[Comparison]) -> list[str]:
    # The study's own methods first, then any other a trial names; each once.
    methods = [study.reference_method, *study.baselines]
    methods += [m for c in comparisons for m in (c.method_a, c.method_b)]
    return list(dict.fromkeys(methods))


def _strengths(study: Study, answers: Sequence[_Answer], bootstrap: int) -> list[Strength]:
    comparisons = _comparisons(answers)
    if not comparisons:
        return []
    methods = _methods(study, comparisons)
    # Keyed by the very comparisons fitted (ids included), so any change to them refits.
    ids = [answer.id for answer in answers if answer.kind == Trial.Kind.AB]
    digest = hashlib.sha256(repr((methods, bootstrap, ids, comparisons)).encode()).hexdigest()
    key = f"evaluation:bradley-terry:{study.pk}:{digest}"
    strengths: list[Strength] | None = cache.get(key)
    if strengths is None:
        strengths = bradley_terry(comparisons, methods, bootstrap=bootstrap)
        cache.set(key, strengths, _BT_CACHE_SECONDS)
    return strengths


def _participant_rows(study: Study, answers: Sequence[_Answer]) -> list[ParticipantRow]:
    by_participant: dict[int, list[_Answer]] = defaultdict(list)
    for answer in answers:
        by_participant[answer.participant].append(answer)
    # Times feed the speeder check only; an answer without a time still counts for one-key.
    timed = participant_flags(
        {
            pid: [(a.response_ms, a.choice) for a in rows if a.response_ms is not None]
            for pid, rows in by_participant.items()
        }
    )
    sides = participant_flags(
        {pid: [(0.0, a.choice) for a in rows] for pid, rows in by_participant.items()}
    )
    people = Participant.objects.filter(study=study).values_list(
        "id", "platform_pid", "started_at", "finished_at", "excluded"
    )
    rows = []
    for pid, platform_pid, started_at, finished_at, excluded in people:
        own = by_participant.get(pid, [])
        catch = [a for a in own if a.kind == Trial.Kind.CATCH]
        time_flags, side_flags = timed.get(pid), sides.get(pid)
        rows.append(
            ParticipantRow(
                id=pid,
                platform_pid=platform_pid,
                started_at=started_at,
                finished_at=finished_at,
                excluded=excluded,
                answers=len(own),
                total_ms=sum(a.response_ms or 0 for a in own),
                median_ms=time_flags.median_ms if time_flags else None,
                catch=proportion(sum(a.picked_a is True for a in catch), len(catch)),
                speeder=bool(time_flags and time_flags.speeder),
                one_key=bool(side_flags and side_flags.one_key),
                top_side=side_flags.top_side if side_flags else None,
            )
        )
    return rows


def _agreement(answers: Sequence[_Answer]) -> Agreement:
    ratings: dict[int, list[str | None]] = defaultdict(list)
    for answer in answers:
        if answer.kind == Trial.Kind.AB:
            ratings[answer.trial].append(answer.winner or SAME)
    return krippendorff_alpha(ratings)


def _candidates(study: Study, answers: Sequence[_Answer]) -> tuple[list[Candidate], int]:
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    for answer in answers:
        if answer.kind != Trial.Kind.AB:
            continue
        picked = answer.picked_a
        votes[answer.trial]["tie" if picked is None else "reference" if picked else "baseline"] += 1
    # At least two answers, and more than half of them for the baseline's image.
    clear = {
        trial: tally
        for trial, tally in votes.items()
        if tally.total() >= 2 and 2 * tally["baseline"] > tally.total()
    }
    if not clear:
        return [], 0
    trials = Trial.objects.filter(pk__in=clear).select_related("query", "image_a", "image_b")
    candidates = []
    already_sent = 0
    for trial in trials:
        if trial.sent_to_curation:
            already_sent += 1
            continue
        tally = clear[trial.pk]
        candidates.append(
            Candidate(
                trial=trial,
                answers=tally.total(),
                baseline_votes=tally["baseline"],
                reference_votes=tally["reference"],
                ties=tally["tie"],
            )
        )
    candidates.sort(key=lambda c: (-c.baseline_votes / c.answers, -c.answers, c.trial.pk))
    return candidates, already_sent


def study_results(study: Study, bootstrap: int = BOOTSTRAP) -> StudyResults:
    """Everything the results page shows, from the stored answers: the answers in one query,
    then one each for participants, trial counts and the curation candidates."""
    everyone = _answers(study)
    # The figures leave out participants a researcher excluded; their row still shows.
    answers = [a for a in everyone if not a.excluded]
    trials = dict(Counter(study.trials.values_list("kind", flat=True)))
    ab = [a for a in answers if a.kind == Trial.Kind.AB]
    catch = [a for a in answers if a.kind == Trial.Kind.CATCH]
    participants = _participant_rows(study, everyone)
    candidates, already_sent = _candidates(study, answers)
    agreement = _agreement(answers)

    notes = []
    if not trials:
        notes.append("This study has no trials yet.")
    if not answers:
        notes.append("No answers yet: the figures below fill in as participants answer.")
    else:
        if not ab:
            notes.append("No A/B answers yet.")
        if not catch:
            notes.append("No catch-trial answers yet.")
        if not agreement.trials:
            notes.append("No A/B trial has two or more raters yet, so agreement is unknown.")

    return StudyResults(
        study=study,
        reference=study.reference_method,
        baselines=list(study.baselines),
        trials=trials,
        answers=len(answers),
        ab_answers=len(ab),
        catch_answers=len(catch),
        ab_rows=_ab_rows(study, answers),
        strengths=_strengths(study, answers, bootstrap),
        # Every answer counts here: sides are randomised in catch trials too.
        position=position_bias(a.choice for a in answers),
        catch=proportion(sum(a.picked_a is True for a in catch), len(catch)),
        participants=participants,
        agreement=agreement,
        candidates=candidates,
        already_sent=already_sent,
        notes=notes,
    )


# --- back to curation --------------------------------------------------------------------


def trial_to_curation(*, trial: Trial, user: User | None) -> Group:
    """Propose a draft group of the trial's query and the baseline's image, which raters
    preferred over the reference's; each trial is offered once."""
    if trial.kind != Trial.Kind.AB:
        raise ValidationError("Only A/B trials can be sent to curation.")
    study = trial.study
    tally = Counter(
        (choice == Answer.Choice.LEFT) == a_on_left if choice != Answer.Choice.SAME else None
        for choice, a_on_left in trial.answers.values_list("choice", "a_on_left")
    )
    notes = (
        f"Proposed from {study} (trial #{trial.pk}): {tally[False]} of {tally.total()} "
        f"answer(s) preferred {trial.method_b}'s image #{trial.image_b_id} over "
        f"{trial.method_a}'s image #{trial.image_a_id} for query image #{trial.query_id}, "
        f"{tally[None]} called them the same."
    )
    with transaction.atomic():
        # The conditional update claims the trial, so two clicks never make two groups.
        claimed = Trial.objects.filter(
            pk=trial.pk, kind=Trial.Kind.AB, sent_to_curation=False
        ).update(sent_to_curation=True)
        if claimed != 1:
            raise ValidationError(f"Trial #{trial.pk} was already sent to curation.")
        group = group_create(
            title=f"Study {study.name}: trial {trial.pk} candidates",
            images=[trial.query, trial.image_b],
            # Study queries are benchmark (test) images: kept out of the training split.
            split=Split.TEST,
            notes=notes,
            user=user,
        )
    trial.sent_to_curation = True
    return group
