"""Paired comparisons of two systems on the same records (McNemar's exact test, a paired bootstrap, a per-record
difference pooled over runs) and over runs (several seeds: the runs are the units)."""

import numpy as np
from scipy import stats
from scipy.stats import binomtest

from ecgllm.evaluation.metrics import binary_metrics, bootstrap


def mcnemar(labels, predicted_a, predicted_b) -> dict:
    """Exact McNemar test on the records where exactly one system is right."""
    right_a = np.asarray(predicted_a) == np.asarray(labels)
    right_b = np.asarray(predicted_b) == np.asarray(labels)
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": float(p)}


def paired_bootstrap(labels, p_a, threshold_a, p_b, threshold_b, metric: str = "f1", n_resamples: int = 1000,
                     seed: int = 0) -> dict:
    """Difference b - a of a metric, with a 95% interval from resampling the same records for both systems."""
    labels, p_a, p_b = map(np.asarray, (labels, p_a, p_b))
    rng = np.random.default_rng(seed)
    point = binary_metrics(labels, p_b, threshold_b)[metric] - binary_metrics(labels, p_a, threshold_a)[metric]
    diffs = []
    for _ in range(n_resamples):
        i = rng.integers(0, len(labels), len(labels))
        diffs.append(binary_metrics(labels[i], p_b[i], threshold_b)[metric]
                     - binary_metrics(labels[i], p_a[i], threshold_a)[metric])
    diffs = np.asarray(diffs)
    return {"metric": metric, "difference": float(point),
            "interval_95": (float(np.nanquantile(diffs, 0.025)), float(np.nanquantile(diffs, 0.975))),
            "share_b_better": float(np.mean(diffs > 0))}


def pooled_difference(differences: list[np.ndarray], n_resamples: int = 2000) -> dict:
    """Per-record differences of two systems (e.g. of log-loss, b - a), one array per run, pooled over the runs'
    records: their mean with a 95 % percentile bootstrap interval over the pooled records."""
    pooled = np.concatenate(differences)
    interval = bootstrap(lambda d: {"mean": float(d.mean())}, (pooled,), n_resamples=n_resamples)["mean"]
    return {"mean": float(pooled.mean()), "interval_95": interval, "n_records": len(pooled)}


def mean_sd(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def paired_over_runs(differences: list[float]) -> dict:
    """Mean difference of two systems over runs (seeds) with a 95 % t interval: the runs are the units."""
    n, mean = len(differences), float(np.mean(differences))
    if n < 2:
        return {"mean": mean, "interval_95": None}
    half = stats.t.ppf(0.975, n - 1) * np.std(differences, ddof=1) / np.sqrt(n)
    return {"mean": mean, "interval_95": [mean - half, mean + half]}
