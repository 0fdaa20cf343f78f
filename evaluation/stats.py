"""Statistics for the paper's results: A/B study tables with Wilson intervals, Bradley-Terry
strengths, bootstrap intervals for judge scores, rater agreement and participant checks.

Pure Python and numpy, free of Django, so views, tasks and tests can all call it.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import NamedTuple, TypeVar

import choix
import krippendorff
import numpy as np
from numpy.typing import NDArray

# One Wilson interval for every app; re-exported here, where the results code looks for it.
from core.intervals import Z_95, wilson_interval

LEFT = "left"
RIGHT = "right"
SAME = "same"

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Proportion:
    """`count` out of `total`, its share and the Wilson interval of the share."""

    count: int
    total: int
    share: float
    low: float
    high: float


def proportion(count: int, total: int, z: float = Z_95) -> Proportion:
    """A `Proportion` with its Wilson interval; the share of an empty total is 0."""
    low, high = wilson_interval(count, total, z)
    return Proportion(count, total, count / total if total else 0.0, low, high)


# --- A/B study ---------------------------------------------------------------------------


class Comparison(NamedTuple):
    """One A/B answer: the two methods shown and the chosen one, None for a tie."""

    method_a: str
    method_b: str
    winner: str | None


def _check(comparison: Comparison) -> None:
    method_a, method_b, winner = comparison
    if method_a == method_b:
        raise ValueError(f"a comparison needs two different methods, got {method_a!r} twice")
    if winner not in (method_a, method_b, None):
        raise ValueError(f"winner {winner!r} is neither {method_a!r} nor {method_b!r}")


@dataclass(frozen=True)
class ABRow:
    """One line of the paper's A/B table: the reference method against one baseline."""

    reference: str
    baseline: str
    wins: Proportion
    ties: Proportion
    losses: Proportion

    @property
    def total(self) -> int:
        return self.wins.total


def ab_table(
    comparisons: Iterable[tuple[str, str, str | None]],
    reference: str = "relsim",
    baselines: Sequence[str] | None = None,
    z: float = Z_95,
) -> list[ABRow]:
    """Wins, ties and losses of `reference` against each baseline, with Wilson intervals.

    Either side of a comparison may be the reference. Comparisons without the reference
    (baseline against baseline) are not part of this table and are skipped. Rows follow
    `baselines` when given (a baseline without answers gets an empty row), else the order in
    which baselines first appear.
    """
    counts: dict[str, Counter[str]] = {}
    for comparison in map(Comparison._make, comparisons):
        _check(comparison)
        method_a, method_b, winner = comparison
        if reference not in (method_a, method_b):
            continue
        baseline = method_b if method_a == reference else method_a
        outcome = "tie" if winner is None else "win" if winner == reference else "loss"
        counts.setdefault(baseline, Counter())[outcome] += 1

    order = list(baselines) if baselines is not None else list(counts)
    rows = []
    for baseline in order:
        tally = counts.get(baseline, Counter())
        total = tally.total()
        rows.append(
            ABRow(
                reference=reference,
                baseline=baseline,
                wins=proportion(tally["win"], total, z),
                ties=proportion(tally["tie"], total, z),
                losses=proportion(tally["loss"], total, z),
            )
        )
    return rows


def ab_table_markdown(rows: Sequence[ABRow]) -> str:
    """The table as the paper prints it: `| vs | relsim | tie | baseline | total |`."""
    reference = rows[0].reference if rows else "relsim"
    lines = [
        f"| vs | {reference} | tie | baseline | total |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {row.baseline} | {row.wins.count} | {row.ties.count} | {row.losses.count} "
        f"| {row.total} |"
        for row in rows
    ]
    return "\n".join(lines)


# --- Bradley-Terry -------------------------------------------------------------------------


@dataclass(frozen=True)
class Strength:
    """A method's Bradley-Terry strength (log scale, mean 0 over methods), its bootstrap
    interval and its rank (1 is strongest)."""

    method: str
    strength: float
    low: float
    high: float
    rank: int


def _win_matrix(
    first: NDArray[np.intp], second: NDArray[np.intp], first_share: NDArray[np.float64], size: int
) -> NDArray[np.float64]:
    matrix = np.zeros((size, size))
    # add.at, not fancy-index +=, because a resample repeats the same pair many times.
    np.add.at(matrix, (first, second), first_share)
    np.add.at(matrix, (second, first), 1.0 - first_share)
    return matrix


def _fit(matrix: NDArray[np.float64], alpha: float) -> NDArray[np.float64]:
    params: NDArray[np.float64] = choix.ilsr_pairwise_dense(matrix, alpha=alpha, max_iter=10_000)
    centred: NDArray[np.float64] = params - params.mean()
    return centred


def bradley_terry(
    comparisons: Iterable[tuple[str, str, str | None]],
    methods: Sequence[str],
    bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.01,
    level: float = 0.95,
) -> list[Strength]:
    """Bradley-Terry strengths of `methods` from pairwise answers, strongest first.

    A tie counts as half a win for each side. `alpha` regularises the fit so that it still
    converges when one method wins every time or a method has no answers (its strength is
    then 0). The interval is the percentile bootstrap over `bootstrap` resamples of the
    comparisons, drawn with a Generator seeded with `seed`, so the same inputs give the same
    interval.
    """
    if bootstrap < 1:
        raise ValueError("bootstrap needs at least one resample")
    if len(set(methods)) != len(methods):
        raise ValueError("methods must be distinct")
    index = {method: position for position, method in enumerate(methods)}
    first, second, first_share = [], [], []
    for comparison in map(Comparison._make, comparisons):
        _check(comparison)
        method_a, method_b, winner = comparison
        unknown = {method_a, method_b} - index.keys()
        if unknown:
            raise ValueError(f"comparison names methods not in `methods`: {sorted(unknown)}")
        first.append(index[method_a])
        second.append(index[method_b])
        first_share.append(0.5 if winner is None else 1.0 if winner == method_a else 0.0)
    a = np.array(first, dtype=np.intp)
    b = np.array(second, dtype=np.intp)
    share = np.array(first_share, dtype=float)

    point = _fit(_win_matrix(a, b, share, len(methods)), alpha)
    rng = np.random.default_rng(seed)
    samples = np.empty((bootstrap, len(methods)))
    for draw in range(bootstrap):
        picked = rng.integers(0, len(a), len(a))
        samples[draw] = _fit(_win_matrix(a[picked], b[picked], share[picked], len(methods)), alpha)
    tail = (1 - level) / 2
    lows, highs = np.quantile(samples, [tail, 1 - tail], axis=0)

    # Stable sort: equal strengths keep the order of `methods`.
    order = sorted(range(len(methods)), key=lambda position: -point[position])
    return [
        Strength(
            method=methods[position],
            strength=float(point[position]),
            low=float(lows[position]),
            high=float(highs[position]),
            rank=rank,
        )
        for rank, position in enumerate(order, start=1)
    ]


# --- judge scores --------------------------------------------------------------------------


class MeanInterval(NamedTuple):
    """A mean and its bootstrap interval; unpacks as `mean, low, high`."""

    mean: float
    low: float
    high: float


def bootstrap_mean_ci(
    values: Iterable[float], n: int = 2000, seed: int = 0, level: float = 0.95
) -> MeanInterval:
    """Mean of `values` with a percentile bootstrap interval from `n` seeded resamples."""
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        raise ValueError("the mean of no values is undefined")
    if n < 1:
        raise ValueError("n needs at least one resample")
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    # Resample in blocks of about a million draws so large score lists stay in memory.
    block = max(1, 1_000_000 // data.size)
    for start in range(0, n, block):
        stop = min(n, start + block)
        means[start:stop] = data[rng.integers(0, data.size, (stop - start, data.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return MeanInterval(float(data.mean()), float(low), float(high))


# --- position bias and agreement ---------------------------------------------------------


def position_bias(sides: Iterable[str | None], z: float = Z_95) -> Proportion:
    """Share of "left" among the answers that picked a side; "same" and None are ties and
    left out. An unbiased study has 0.5 inside the interval."""
    tally: Counter[str] = Counter()
    for side in sides:
        if side not in (LEFT, RIGHT, SAME, None):
            raise ValueError(f"unknown side {side!r}")
        if side in (LEFT, RIGHT):
            tally[side] += 1
    return proportion(tally[LEFT], tally[LEFT] + tally[RIGHT], z)


@dataclass(frozen=True)
class Agreement:
    """Agreement among raters of the same trials.

    `alpha` is Krippendorff's nominal alpha, None when it is undefined: fewer than two trials
    with two or more ratings, or every rating the same (no expected disagreement).
    `percent_agreement` is the mean over trials of the share of rater pairs that agree, None
    when no trial counted. `trials` and `ratings` say how much data counted.
    """

    alpha: float | None
    percent_agreement: float | None
    trials: int
    ratings: int


def krippendorff_alpha(ratings_by_trial: Mapping[K, Sequence[str | None]]) -> Agreement:
    """Krippendorff's alpha (nominal) and pairwise percent agreement of categorical answers
    ("left"/"right"/"same" or method names) grouped by trial; None answers are missing.

    Only trials with at least two answers count: a lone answer has nobody to agree with.
    """
    trials = [
        [answer for answer in answers if answer is not None]
        for answers in ratings_by_trial.values()
    ]
    trials = [answers for answers in trials if len(answers) >= 2]
    ratings = sum(len(answers) for answers in trials)
    if not trials:
        return Agreement(None, None, 0, 0)

    # Each trial weighs the same, however many raters it had.
    agreeing = [
        sum(x == y for x, y in combinations(answers, 2)) / math.comb(len(answers), 2)
        for answers in trials
    ]
    percent = sum(agreeing) / len(agreeing)

    values = sorted({answer for answers in trials for answer in answers})
    if len(trials) < 2 or len(values) < 2:
        return Agreement(None, percent, len(trials), ratings)
    column = {value: position for position, value in enumerate(values)}
    value_counts = np.zeros((len(trials), len(values)))
    for row, answers in enumerate(trials):
        for answer in answers:
            value_counts[row, column[answer]] += 1
    alpha = float(krippendorff.alpha(value_counts=value_counts, level_of_measurement="nominal"))
    return Agreement(alpha, percent, len(trials), ratings)


# --- participant checks ------------------------------------------------------------------


class Answer(NamedTuple):
    """One answer of a participant: response time in milliseconds and the side chosen."""

    response_ms: float
    side: str | None


@dataclass(frozen=True)
class ParticipantFlags:
    """Why a participant's answers may not be worth keeping.

    `speeder`: median response time below the threshold. `one_key`: one answer (left, right
    or same) makes up at least the threshold share of enough answers.
    """

    answers: int
    median_ms: float | None
    top_side: str | None
    top_side_share: float | None
    speeder: bool
    one_key: bool

    @property
    def flagged(self) -> bool:
        return self.speeder or self.one_key


def participant_flags(
    answers_by_participant: Mapping[K, Iterable[tuple[float, str | None]]],
    speeder_ms: float = 800.0,
    one_key_share: float = 0.9,
    one_key_min_answers: int = 10,
) -> dict[K, ParticipantFlags]:
    """Flag speeders and one-key answerers among participants.

    A tie answered with None counts as "same": pressing the tie key every time is as
    uninformative as always pressing left. Below `one_key_min_answers` a run of equal answers
    is too likely by chance to flag.
    """
    flags = {}
    for participant, raw in answers_by_participant.items():
        answers = [Answer._make(answer) for answer in raw]
        if not answers:
            flags[participant] = ParticipantFlags(0, None, None, None, False, False)
            continue
        median_ms = float(statistics.median(answer.response_ms for answer in answers))
        top_side, top_count = Counter(
            SAME if answer.side is None else answer.side for answer in answers
        ).most_common(1)[0]
        top_share = top_count / len(answers)
        flags[participant] = ParticipantFlags(
            answers=len(answers),
            median_ms=median_ms,
            top_side=top_side,
            top_side_share=top_share,
            speeder=median_ms < speeder_ms,
            one_key=len(answers) >= one_key_min_answers and top_share >= one_key_share,
        )
    return flags
