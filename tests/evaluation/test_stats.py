"""The study statistics against values worked out by hand, and the A/B chart's file formats."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from scipy.stats import binomtest

from evaluation.charts import stacked_bar_chart
from evaluation.stats import (
    ABRow,
    Agreement,
    Comparison,
    ab_table,
    ab_table_markdown,
    bootstrap_mean_ci,
    bradley_terry,
    krippendorff_alpha,
    participant_flags,
    position_bias,
    proportion,
    wilson_interval,
)

Z = 1.959963984540054

# The paper's A/B table (REFERENCE.md): relsim / tie / baseline per baseline.
PAPER = {
    "dreamsim": (427, 150, 303),
    "DINO": (477, 189, 214),
    "CLIP-I": (340, 205, 255),
    "CLIP-T": (525, 111, 244),
    "Qwen-T": (534, 154, 192),
}


def _paper_comparisons() -> list[Comparison]:
    answers = []
    for baseline, (wins, ties, losses) in PAPER.items():
        answers += [Comparison("relsim", baseline, "relsim")] * wins
        answers += [Comparison(baseline, "relsim", None)] * ties
        answers += [Comparison("relsim", baseline, baseline)] * losses
    return answers


# --- Wilson --------------------------------------------------------------------------------


def test_wilson_matches_the_formula_worked_by_hand_for_427_of_880() -> None:
    p = 427 / 880
    z2 = Z**2
    centre = (p + z2 / (2 * 880)) / (1 + z2 / 880)
    half = Z / (1 + z2 / 880) * math.sqrt(p * (1 - p) / 880 + z2 / (4 * 880**2))
    low, high = wilson_interval(427, 880)
    assert low == pytest.approx(centre - half, abs=1e-12)
    assert high == pytest.approx(centre + half, abs=1e-12)
    assert (round(low, 4), round(high, 4)) == (0.4523, 0.5182)


def test_wilson_matches_the_textbook_value_for_81_of_263() -> None:
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (1, 3), (340, 800), (5, 1000)])
def test_wilson_agrees_with_scipys_independent_implementation(k: int, n: int) -> None:
    expected = binomtest(k, n).proportion_ci(method="wilson")
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(expected.low, abs=1e-9)
    assert high == pytest.approx(expected.high, abs=1e-9)


def test_wilson_of_no_trials_is_the_whole_unit_interval() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert proportion(0, 0).share == 0.0


def test_wilson_rejects_more_successes_than_trials() -> None:
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


# --- A/B table -----------------------------------------------------------------------------


def test_ab_table_counts_wins_ties_and_losses_on_either_side() -> None:
    answers = [
        ("relsim", "dino", "relsim"),
        ("dino", "relsim", "relsim"),
        ("relsim", "dino", None),
        ("dino", "relsim", "dino"),
        ("relsim", "clip", "clip"),
        ("clip", "dino", "clip"),  # no relsim: not part of the table
    ]
    dino, clip = ab_table(answers)
    assert (dino.baseline, dino.wins.count, dino.ties.count, dino.losses.count) == (
        "dino",
        2,
        1,
        1,
    )
    assert dino.total == 4
    assert dino.wins.share == 0.5
    assert (dino.wins.low, dino.wins.high) == wilson_interval(2, 4)
    assert (clip.wins.count, clip.ties.count, clip.losses.count, clip.total) == (0, 0, 1, 1)


def test_ab_table_follows_the_given_baseline_order_and_keeps_empty_rows() -> None:
    rows = ab_table([("relsim", "dino", "relsim")], baselines=["clip", "dino"])
    assert [row.baseline for row in rows] == ["clip", "dino"]
    assert rows[0].total == 0
    assert (rows[0].wins.low, rows[0].wins.high) == (0.0, 1.0)


def test_ab_table_rejects_a_winner_that_was_not_shown() -> None:
    with pytest.raises(ValueError, match="neither"):
        ab_table([("relsim", "dino", "clip")])


def test_ab_table_reproduces_the_papers_table() -> None:
    rows = ab_table(_paper_comparisons())
    assert [(row.wins.count, row.ties.count, row.losses.count) for row in rows] == list(
        PAPER.values()
    )
    assert ab_table_markdown(rows).splitlines()[:3] == [
        "| vs | relsim | tie | baseline | total |",
        "| --- | --- | --- | --- | --- |",
        "| dreamsim | 427 | 150 | 303 | 880 |",
    ]
    # Counting ties against relsim, its share of all answers is surely above half only
    # against DINO, CLIP-T and Qwen-T: 477/880 has the interval (0.509, 0.575).
    assert [row.baseline for row in rows if row.wins.low > 0.5] == ["DINO", "CLIP-T", "Qwen-T"]
    assert (round(rows[1].wins.low, 3), round(rows[1].wins.high, 3)) == (0.509, 0.575)


# --- Bradley-Terry -------------------------------------------------------------------------


def _pairs(a: str, b: str, a_wins: int, total: int) -> list[Comparison]:
    return [Comparison(a, b, a)] * a_wins + [Comparison(a, b, b)] * (total - a_wins)


def test_bradley_terry_orders_a_over_b_over_c() -> None:
    comparisons = _pairs("A", "B", 8, 10) + _pairs("B", "C", 8, 10) + _pairs("A", "C", 9, 10)
    result = bradley_terry(comparisons, ["C", "B", "A"], bootstrap=200)
    assert [(s.method, s.rank) for s in result] == [("A", 1), ("B", 2), ("C", 3)]
    assert sum(s.strength for s in result) == pytest.approx(0.0, abs=1e-9)
    for s in result:
        assert s.low <= s.strength <= s.high


def test_bradley_terry_gives_equal_strengths_to_a_symmetric_case() -> None:
    comparisons = _pairs("A", "B", 5, 10) + _pairs("B", "C", 5, 10) + _pairs("A", "C", 5, 10)
    result = bradley_terry(comparisons, ["A", "B", "C"], bootstrap=50)
    for s in result:
        assert s.strength == pytest.approx(0.0, abs=1e-6)
    # Equal strengths keep the order the methods were given in.
    assert [s.method for s in result] == ["A", "B", "C"]


def test_bradley_terry_for_two_methods_is_the_log_odds_and_ties_count_half() -> None:
    # 30 of 40 wins: log odds log(30/10). 10 wins and 10 ties: 15 of 20, the same odds.
    wins_only = bradley_terry(_pairs("A", "B", 30, 40), ["A", "B"], bootstrap=20)
    with_ties = bradley_terry(
        _pairs("A", "B", 10, 10) + [Comparison("A", "B", None)] * 10, ["A", "B"], bootstrap=20
    )
    for result in (wins_only, with_ties):
        gap = result[0].strength - result[1].strength
        assert gap == pytest.approx(math.log(3), abs=0.01)


def test_bradley_terry_converges_when_one_method_always_wins() -> None:
    result = bradley_terry(_pairs("A", "B", 10, 10), ["A", "B", "unseen"], bootstrap=20)
    by_method = {s.method: s for s in result}
    assert by_method["A"].rank == 1
    assert all(math.isfinite(s.strength) for s in result)


def test_bradley_terry_bootstrap_is_reproducible_with_a_seed() -> None:
    comparisons = _pairs("A", "B", 6, 10) + _pairs("B", "C", 7, 10)
    first = bradley_terry(comparisons, ["A", "B", "C"], bootstrap=100, seed=3)
    again = bradley_terry(comparisons, ["A", "B", "C"], bootstrap=100, seed=3)
    other = bradley_terry(comparisons, ["A", "B", "C"], bootstrap=100, seed=4)
    assert first == again
    assert first != other


def test_bradley_terry_rejects_a_method_it_was_not_told_about() -> None:
    with pytest.raises(ValueError, match="not in"):
        bradley_terry([("A", "Z", "A")], ["A", "B"], bootstrap=1)


# --- bootstrap mean --------------------------------------------------------------------------


def test_bootstrap_mean_ci_contains_the_mean_and_is_reproducible() -> None:
    scores = [6, 7, 5, 8, 6, 9, 4, 7, 6, 7, 10, 3, 6, 7, 8]
    mean, low, high = bootstrap_mean_ci(scores, n=2000, seed=1)
    assert mean == pytest.approx(sum(scores) / len(scores))
    assert low < mean < high
    # The interval is about two standard errors either side.
    assert 0.5 < high - low < 2.5
    assert bootstrap_mean_ci(scores, n=2000, seed=1) == (mean, low, high)
    assert bootstrap_mean_ci(scores, n=2000, seed=2) != (mean, low, high)


def test_bootstrap_mean_ci_of_constant_scores_is_a_point() -> None:
    assert bootstrap_mean_ci([5.0] * 20, n=100) == (5.0, 5.0, 5.0)


def test_bootstrap_mean_ci_stays_sound_when_it_resamples_in_blocks() -> None:
    # 2,000 resamples of 1,000 values are drawn in two blocks of 1,000.
    values = [float(i % 11) for i in range(1000)]
    mean, low, high = bootstrap_mean_ci(values, n=2000)
    assert low < mean < high
    assert high - low == pytest.approx(2 * 1.96 * 3.163 / math.sqrt(1000), rel=0.15)


def test_bootstrap_mean_ci_rejects_no_values() -> None:
    with pytest.raises(ValueError):
        bootstrap_mean_ci([])


# --- position bias ---------------------------------------------------------------------------


def test_position_bias_counts_left_among_answers_that_chose_a_side() -> None:
    sides = ["left"] * 6 + ["right"] * 2 + ["same"] * 5 + [None]
    bias = position_bias(sides)
    assert (bias.count, bias.total, bias.share) == (6, 8, 0.75)
    assert (bias.low, bias.high) == wilson_interval(6, 8)


def test_position_bias_rejects_an_unknown_side() -> None:
    with pytest.raises(ValueError):
        position_bias(["up"])


# --- Krippendorff's alpha -------------------------------------------------------------------


def test_krippendorff_alpha_matches_the_value_worked_by_hand() -> None:
    ratings = {
        1: ["left", "left"],
        2: ["left", "right"],
        3: ["right", "right"],
        4: ["right", "right"],
        5: ["left"],  # one rater: does not count
    }
    # Coincidences (each pair over m_u - 1 = 1): o_LL = 2, o_LR = o_RL = 1, o_RR = 4.
    # n_L = 3, n_R = 5, n = 8. D_o = (o_LR + o_RL) / n = 2 / 8.
    # D_e = (n_L n_R + n_R n_L) / (n (n - 1)) = 30 / 56. alpha = 1 - D_o / D_e = 8 / 15.
    d_o = 2 / 8
    d_e = 30 / 56
    result = krippendorff_alpha(ratings)
    assert result.alpha == pytest.approx(1 - d_o / d_e)
    assert result.alpha == pytest.approx(8 / 15)
    # Agreeing pairs per trial: 1, 0, 1, 1.
    assert result.percent_agreement == pytest.approx(0.75)
    assert (result.trials, result.ratings) == (4, 8)


def test_krippendorff_alpha_with_three_raters_matches_the_worked_example() -> None:
    # Krippendorff's three-observer example with missing answers; nominal alpha 0.691358.
    raters = [
        [None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
        [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
        [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4],
    ]
    ratings = {
        unit: [None if rater[unit] is None else str(rater[unit]) for rater in raters]
        for unit in range(15)
    }
    assert krippendorff_alpha(ratings).alpha == pytest.approx(0.691358, abs=1e-6)


def test_krippendorff_alpha_of_perfect_agreement_is_one() -> None:
    result = krippendorff_alpha({"a": ["left", "left"], "b": ["right", "right", "right"]})
    assert result.alpha == pytest.approx(1.0)
    assert result.percent_agreement == 1.0


def test_krippendorff_alpha_is_none_without_enough_trials_or_variation() -> None:
    assert krippendorff_alpha({"a": ["left", "right"], "b": ["left"]}) == Agreement(None, 0.0, 1, 2)
    same = krippendorff_alpha({"a": ["left", "left"], "b": ["left", "left"]})
    assert same.alpha is None
    assert same.percent_agreement == 1.0
    assert krippendorff_alpha({}) == Agreement(None, None, 0, 0)


# --- participant flags ----------------------------------------------------------------------


def test_participant_flags_find_speeders_and_one_key_answerers() -> None:
    careful = [(1500.0, "left" if i % 2 else "right") for i in range(12)]
    speeder = [(400.0 + i, "left" if i % 2 else "right") for i in range(12)]
    one_key = [(2000.0, "left")] * 9 + [(2000.0, "right")]
    few_answers = [(2000.0, "left")] * 9
    tie_presser = [(1200.0, None)] * 10 + [(1200.0, "same")] * 2
    flags = participant_flags(
        {
            "careful": careful,
            "speeder": speeder,
            "one_key": one_key,
            "few": few_answers,
            "ties": tie_presser,
            "nobody": [],
        }
    )
    assert not flags["careful"].flagged
    assert flags["speeder"].speeder
    assert flags["speeder"].median_ms == 405.5
    assert not flags["speeder"].one_key
    assert flags["one_key"].one_key
    assert (flags["one_key"].top_side, flags["one_key"].top_side_share) == ("left", 0.9)
    assert not flags["one_key"].speeder
    assert not flags["few"].one_key  # 9 answers are too few to judge
    assert flags["ties"].one_key
    assert flags["ties"].top_side == "same"
    assert not flags["nobody"].flagged
    assert flags["nobody"].median_ms is None


def test_participant_flags_thresholds_are_parameters() -> None:
    answers = {"p": [(900.0, "left")] * 4 + [(900.0, "right")]}
    flags = participant_flags(answers, speeder_ms=1000, one_key_share=0.8, one_key_min_answers=5)
    assert flags["p"].speeder
    assert flags["p"].one_key


# --- chart -----------------------------------------------------------------------------------


def _paper_rows() -> list[ABRow]:
    return ab_table(_paper_comparisons())


def test_stacked_bar_chart_renders_png_and_pdf() -> None:
    png = stacked_bar_chart(_paper_rows(), fmt="png")
    pdf = stacked_bar_chart(_paper_rows(), fmt="pdf", title="relsim vs baselines")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert pdf.startswith(b"%PDF")
    # No creation date: the same table gives the same PDF.
    assert stacked_bar_chart(_paper_rows(), fmt="pdf", title="relsim vs baselines") == pdf


def test_stacked_bar_chart_writes_to_a_buffer_or_a_path(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    data = stacked_bar_chart(_paper_rows(), buffer, fmt="pdf")
    assert buffer.getvalue() == data
    path = tmp_path / "ab.png"
    data = stacked_bar_chart(_paper_rows(), path, fmt="png")
    assert path.read_bytes() == data
    assert data.startswith(b"\x89PNG")


def test_stacked_bar_chart_handles_a_row_without_answers() -> None:
    rows = ab_table([("relsim", "dino", "relsim")], baselines=["dino", "clip"])
    assert stacked_bar_chart(rows).startswith(b"\x89PNG")
