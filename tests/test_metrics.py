import numpy as np
import pytest

from ecgllm.evaluation.metrics import binary_metrics, choose_threshold, evaluate_predictions, format_evaluation


def test_binary_metrics_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.2, 0.7, 0.3, 0.8, 0.9, 0.4, 0.05])
    m = binary_metrics(labels, p, 0.5)  # tp 2, fp 1, fn 1, tn 4
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(14 / 15)


def test_choose_threshold_maximises_f1():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    p = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 300), 0, 1)
    best = choose_threshold(labels, p)
    best_f1 = binary_metrics(labels, p, best)["f1"]
    assert all(binary_metrics(labels, p, t)["f1"] <= best_f1 + 1e-12 for t in np.unique(p))


def test_intervals_contain_the_estimate():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    p = np.clip(labels * 0.4 + rng.uniform(0, 0.6, 200), 0, 1)
    result = evaluate_predictions(labels, p, 0.5, n_resamples=200)
    for name, value in result["metrics"].items():
        low, high = result["intervals_95"][name]
        assert low <= value <= high and high - low < 0.3
    cm = result["confusion_matrix"]
    assert sum(cm.values()) == 200 and cm["tp"] + cm["fn"] == labels.sum()
    assert "f1" in format_evaluation("test", result)
