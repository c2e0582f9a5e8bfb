import numpy as np
import pytest

from ecgllm.evaluation.four_class import (
    af_score,
    challenge_score,
    choose_checked_offsets,
    choose_offsets,
    decide,
    evaluate_four_class,
    format_four_class,
    headline_figures,
)


def test_challenge_score_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2, 3])
    predicted = np.array([0, 1, 1, 1, 2, 0, 3])
    # N: tp 1, fp 1, fn 1 -> 0.5; A: tp 2, fp 1 -> 0.8; O: tp 1, fn 1 -> 2/3; noise is not scored
    assert challenge_score(labels, predicted) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_decide_adds_offsets_and_af_score_is_the_margin_over_the_best_other_class():
    scores = np.log(np.array([[0.5, 0.3, 0.1, 0.1], [0.2, 0.5, 0.25, 0.05]]))
    assert decide(scores, [0, 0, 0, 0]).tolist() == [0, 1]
    assert decide(scores, [0, 1.0, 0, 0]).tolist() == [1, 1]
    assert af_score(scores) == pytest.approx([np.log(0.3 / 0.5), np.log(0.5 / 0.25)])


def test_offsets_chosen_on_validation_undo_a_bias_and_never_score_worse():
    rng = np.random.default_rng(0)
    labels = rng.choice(4, 2000, p=[0.6, 0.1, 0.25, 0.05])
    scores = rng.normal(0, 1, (2000, 4))
    scores[np.arange(2000), labels] += 2.0
    scores[:, 1] -= 1.5  # a system that rarely says AF
    offsets = choose_offsets(labels, scores)
    assert offsets[0] == 0.0
    assert offsets[1] > 0.5
    before = challenge_score(labels, decide(scores, np.zeros(4)))
    assert challenge_score(labels, decide(scores, offsets)) > before + 0.05


def test_checked_offsets_keep_a_bias_correction_and_drop_offsets_that_fit_noise():
    """Offsets that undo a real bias carry to held-out halves of validation; on a system without bias the offsets
    chosen on 300 records follow chance and are replaced by none."""
    rng = np.random.default_rng(1)
    labels = rng.choice(4, 300, p=[0.6, 0.1, 0.25, 0.05])
    scores = rng.normal(0, 1, (300, 4))
    scores[np.arange(300), labels] += 2.0
    unbiased = choose_checked_offsets(labels, scores, repeats=20)
    assert choose_offsets(labels, scores) != [0.0] * 4  # the coordinate ascent finds something to follow
    assert unbiased["check"]["held_out_gain"] <= 0 and unbiased["offsets"] == [0.0] * 4
    scores[:, 1] -= 1.5
    biased = choose_checked_offsets(labels, scores, repeats=20)
    assert biased["check"] == {"repeats": 20, "held_out_gain": biased["check"]["held_out_gain"], "kept": True}
    assert biased["check"]["held_out_gain"] > 0 and biased["offsets"] == choose_offsets(labels, scores)
    assert not unbiased["check"]["kept"]
    assert choose_checked_offsets(labels, scores, repeats=0) == {
        "offsets": biased["offsets"], "check": {"repeats": 0, "held_out_gain": None, "kept": True}}


def test_evaluation_reports_n_vs_a_on_the_n_and_a_records_and_af_calls_per_class():
    labels = np.array([0, 0, 1, 1, 2, 3, 3])
    predicted = np.array([0, 2, 1, 3, 1, 1, 3])
    scores = np.full((7, 4), -5.0)
    scores[np.arange(7), predicted] = 0.0
    result = evaluate_four_class(labels, scores, [0.0] * 4, n_resamples=50)
    assert result["n_vs_a"]["n_records"] == 4
    # N vs A: one AF found of two, the N record decided O counts as "not AF"
    assert result["n_vs_a"]["metrics"]["sensitivity"] == 0.5
    assert result["n_vs_a"]["metrics"]["specificity"] == 1.0
    assert result["called_af"] == {"N": 0.0, "A": 0.5, "O": 1.0, "~": 0.5}
    assert result["confusion_matrix"]["counts"][0] == [1, 0, 1, 0]
    low, high = result["four_class"]["intervals_95"]["challenge_score"]
    assert low <= result["four_class"]["metrics"]["challenge_score"] <= high
    assert "challenge_score" in format_four_class("test", result)
    headline = headline_figures(result)
    assert headline["af_f1"] == result["four_class"]["metrics"]["f1_A"]  # AF-vs-rest F1 is class A's F1
    assert headline["n_vs_a_f1"] == result["n_vs_a"]["metrics"]["f1"]
    assert (headline["o_called_af"], headline["noisy_called_af"]) == (1.0, 0.5)
