"""A study's results against figures worked out by hand from a small set of answers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from evaluation.models import Answer, Participant, Study, StudyText, Trial
from evaluation.results import study_results

pytestmark = pytest.mark.django_db

Z = 1.959963984540054


def wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return centre - half, centre + half


def _image(n: int) -> Any:
    from curation.models import Image

    sha = f"{n:064x}"
    return Image.objects.create(
        sha256=sha,
        md5=sha[:32],
        width=8,
        height=8,
        original_format="png",
        file=f"images/{sha[:2]}/{sha}.png",
        phash="0" * 16,
    )


def _answer(participant: Participant, trial: Trial, choice: str, a_on_left: bool, ms: int) -> None:
    picked_a = None if choice == "same" else (choice == "left") == a_on_left
    preferred = "" if picked_a is None else trial.method_a if picked_a else trial.method_b
    Answer.objects.create(
        participant=participant,
        trial=trial,
        position=Answer.objects.filter(participant=participant).count(),
        choice=choice,
        a_on_left=a_on_left,
        preferred=preferred,
        response_ms=ms,
    )


def _study(baselines: list[str]) -> tuple[Study, StudyText]:
    study = Study.objects.create(name="s", reference_method="relsim", baselines=baselines)
    text = StudyText.objects.create(study=study, version=1, consent="c", instructions="i")
    return study, text


@pytest.fixture
def example() -> dict[str, Any]:
    """Three A/B trials (two against dino, one against clip), one catch trial, three
    participants who answered and one who never did."""
    study, text = _study(["dino", "clip"])
    images = [_image(n) for n in range(1, 9)]
    query, a1, b1, a2, b2, a3, b3, other = images

    def trial(q: Any, a: Any, b: Any, method_b: str, kind: str = "ab") -> Trial:
        return Trial.objects.create(
            study=study,
            kind=kind,
            query=q,
            image_a=a,
            image_b=b,
            method_a="relsim",
            method_b=method_b,
        )

    t1, t2 = trial(query, a1, b1, "dino"), trial(a1, a2, b2, "dino")
    t3 = trial(b1, a3, b3, "clip")
    c1 = Trial.objects.create(
        study=study,
        kind="catch",
        query=query,
        image_a=a3,
        image_b=other,
        method_a="catch:group",
        method_b="catch:unrelated",
    )
    p1, p2, p3, p4 = (
        Participant.objects.create(study=study, text=text, platform_pid=f"pid{n}")
        for n in range(1, 5)
    )
    # participant, trial, side clicked, image A on the left, time
    for row in (
        (p1, t1, "left", True, 1500),  # relsim
        (p1, t2, "right", False, 1800),  # relsim
        (p1, t3, "left", False, 2100),  # clip
        (p1, c1, "left", True, 1200),  # A: passes
        (p2, t1, "right", False, 1000),  # relsim
        (p2, t2, "same", True, 3000),  # tie
        (p2, t3, "right", True, 2500),  # clip
        (p2, c1, "right", True, 900),  # B: fails
        (p3, t1, "left", False, 1400),  # dino
        (p3, t3, "same", False, 1600),  # tie
        (p3, c1, "left", True, 1100),  # A: passes
    ):
        _answer(*row)
    return {"study": study, "trials": (t1, t2, t3, c1), "people": (p1, p2, p3, p4)}


def test_it_counts_wins_ties_and_losses_per_baseline_over_ab_trials_only(
    example: dict[str, Any],
) -> None:
    results = study_results(example["study"], bootstrap=50)
    dino, clip = results.ab_rows
    assert (dino.baseline, dino.wins.count, dino.ties.count, dino.losses.count) == (
        "dino",
        3,
        1,
        1,
    )
    assert (clip.baseline, clip.wins.count, clip.ties.count, clip.losses.count) == (
        "clip",
        0,
        1,
        2,
    )
    assert (dino.total, clip.total) == (5, 3)
    assert results.ab_answers == 8 and results.catch_answers == 3 and results.answers == 11


def test_the_win_rate_and_its_wilson_interval_match_the_formula(
    example: dict[str, Any],
) -> None:
    dino = study_results(example["study"], bootstrap=50).ab_rows[0]
    assert dino.wins.share == pytest.approx(3 / 5)
    low, high = wilson(3, 5)
    assert [dino.wins.low, dino.wins.high] == pytest.approx([low, high])
    assert low == pytest.approx(0.2307, abs=1e-4) and high == pytest.approx(0.8824, abs=1e-4)
    clip = study_results(example["study"], bootstrap=50).ab_rows[1]
    # No wins: the interval starts at 0 and its top is z²/(n+z²).
    assert clip.wins.low == 0.0
    assert clip.wins.high == pytest.approx(Z * Z / (3 + Z * Z))


def test_bradley_terry_puts_clip_over_relsim_over_dino(example: dict[str, Any]) -> None:
    # relsim beats dino 3.5 to 1.5 (a tie is half each) and loses to clip 0.5 to 2.5.
    strengths = study_results(example["study"], bootstrap=50).strengths
    assert [s.method for s in strengths] == ["clip", "relsim", "dino"]
    assert [s.rank for s in strengths] == [1, 2, 3]
    assert sum(s.strength for s in strengths) == pytest.approx(0.0, abs=1e-9)
    for s in strengths:
        assert s.low <= s.strength <= s.high


def test_position_bias_is_the_share_of_left_among_answers_that_picked_a_side(
    example: dict[str, Any],
) -> None:
    position = study_results(example["study"], bootstrap=50).position
    # 11 answers, 2 "same": 5 left, 4 right.
    assert (position.count, position.total) == (5, 9)
    low, high = wilson(5, 9)
    assert [position.low, position.high] == pytest.approx([low, high])


def test_catch_pass_rate_overall_and_per_participant(example: dict[str, Any]) -> None:
    results = study_results(example["study"], bootstrap=50)
    assert (results.catch.count, results.catch.total) == (2, 3)
    p1, p2, p3, _ = example["people"]
    rows = {row.id: row for row in results.participants}
    assert (rows[p1.pk].catch.count, rows[p1.pk].catch.total) == (1, 1)
    assert (rows[p2.pk].catch.count, rows[p2.pk].catch.total) == (0, 1)
    assert rows[p2.pk].flags == ["failed 1 catch trial(s)"]
    assert rows[p1.pk].flags == [] and rows[p3.pk].flags == []


def test_participants_get_their_answer_counts_and_times(example: dict[str, Any]) -> None:
    results = study_results(example["study"], bootstrap=50)
    p1, p2, p3, p4 = example["people"]
    rows = {row.id: row for row in results.participants}
    assert [row.id for row in results.participants] == [p1.pk, p2.pk, p3.pk, p4.pk]
    assert (rows[p1.pk].answers, rows[p1.pk].total_ms, rows[p1.pk].median_ms) == (4, 6600, 1650)
    assert (rows[p2.pk].answers, rows[p2.pk].total_ms, rows[p2.pk].median_ms) == (4, 7400, 1750)
    assert (rows[p3.pk].answers, rows[p3.pk].total_ms, rows[p3.pk].median_ms) == (3, 4100, 1400)
    # Someone who never answered is listed with nothing against them.
    assert (rows[p4.pk].answers, rows[p4.pk].median_ms, rows[p4.pk].flags) == (0, None, [])


def test_agreement_counts_trials_with_two_or_more_raters(example: dict[str, Any]) -> None:
    agreement = study_results(example["study"], bootstrap=50).agreement
    # t1: relsim, relsim, dino; t2: relsim, same; t3: clip, clip, same (catch left out).
    assert (agreement.trials, agreement.ratings) == (3, 8)
    assert agreement.percent_agreement == pytest.approx((1 / 3 + 0 + 1 / 3) / 3)
    # Krippendorff's nominal alpha by hand: disagreeing pairs within trials, each weighted
    # 1/(m-1): t1 4/2, t2 2/1, t3 4/2 -> D_o = 6/8 over n = 8 values. Values: relsim 3,
    # dino 1, same 2, clip 2 -> D_e = (64 - 18) / (8 * 7).
    expected = 1 - (6 / 8) / (46 / 56)
    assert agreement.alpha == pytest.approx(expected)
    assert expected == pytest.approx(2 / 23)


def test_only_trials_where_most_raters_preferred_the_baseline_are_offered(
    example: dict[str, Any],
) -> None:
    results = study_results(example["study"], bootstrap=50)
    t3 = example["trials"][2]
    assert [c.trial.pk for c in results.candidates] == [t3.pk]
    (candidate,) = results.candidates
    assert (candidate.answers, candidate.baseline_votes, candidate.ties) == (3, 2, 1)
    Trial.objects.filter(pk=t3.pk).update(sent_to_curation=True)
    results = study_results(example["study"], bootstrap=50)
    assert results.candidates == [] and results.already_sent == 1


def test_a_fast_one_key_participant_is_flagged_but_still_counted() -> None:
    study, text = _study(["dino"])
    trials = [
        Trial.objects.create(
            study=study,
            query=_image(3 * n + 1),
            image_a=_image(3 * n + 2),
            image_b=_image(3 * n + 3),
            method_a="relsim",
            method_b="dino",
        )
        for n in range(10)
    ]
    hasty = Participant.objects.create(study=study, text=text)
    careful = Participant.objects.create(study=study, text=text)
    for number, trial in enumerate(trials):
        _answer(hasty, trial, "left", number % 2 == 0, 250)
        _answer(careful, trial, ("left", "right", "same")[number % 3], True, 2000 + number)
    results = study_results(study, bootstrap=50)
    rows = {row.id: row for row in results.participants}
    assert rows[hasty.pk].speeder and rows[hasty.pk].one_key
    assert rows[hasty.pk].flags == ["speeder", "one key (left)"]
    assert rows[careful.pk].flags == []
    assert results.flagged == 1
    # Flags inform; the answers stay in the table.
    assert results.ab_rows[0].total == 20


def test_an_empty_study_says_there_is_nothing_yet() -> None:
    study, _ = _study(["dino"])
    results = study_results(study)
    assert results.answers == 0 and results.strengths == []
    assert results.ab_rows[0].total == 0
    assert results.agreement.alpha is None and results.catch.total == 0
    assert any("No answers yet" in note for note in results.notes)
    assert any("no trials" in note for note in results.notes)


def test_results_take_a_fixed_handful_of_queries(
    example: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(4):
        results = study_results(example["study"], bootstrap=50)
        _ = [c.trial.query.thumbnail for c in results.candidates]
