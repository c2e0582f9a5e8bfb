"""Binary screening metrics (AF = positive class) with 95% bootstrap intervals."""

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_curve, roc_auc_score

METRIC_NAMES = ("accuracy", "precision", "sensitivity", "specificity", "f1", "roc_auc", "pr_auc")


def choose_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold on P(AF) that maximises F1; call it on the validation split only."""
    precision, recall, thresholds = precision_recall_curve(labels, probabilities)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1]))  # the last point (recall 0) has no threshold
    return float(thresholds[best])


def decision_metrics(labels: np.ndarray, predicted: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Metrics of AF decisions (`predicted` 0/1), with the ranking metrics from `scores` (higher: more AF)."""
    labels, predicted = np.asarray(labels).astype(int), np.asarray(predicted).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    both_classes = 0 < labels.sum() < len(labels)
    return {
        "accuracy": (tp + tn) / len(labels),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "sensitivity": tp / (tp + fn) if tp + fn else 0.0,
        "specificity": tn / (tn + fp) if tn + fp else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "roc_auc": roc_auc_score(labels, scores) if both_classes else float("nan"),
        "pr_auc": average_precision_score(labels, scores) if both_classes else float("nan"),
    }


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    return decision_metrics(labels, np.asarray(probabilities) >= threshold, probabilities)


def bootstrap(metrics, arrays: tuple, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
              ) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every value of `metrics(*arrays)` (a dict), over records resampled with replacement:
    the arrays are indexed together."""
    arrays = tuple(np.asarray(a) for a in arrays)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        index = rng.integers(0, len(arrays[0]), len(arrays[0]))
        for name, value in metrics(*(a[index] for a in arrays)).items():
            samples.setdefault(name, []).append(value)
    alpha = (1 - level) / 2
    return {name: (float(np.nanquantile(values, alpha)), float(np.nanquantile(values, 1 - alpha)))
            for name, values in samples.items()}


def bootstrap_intervals(labels: np.ndarray, probabilities: np.ndarray, threshold: float, n_resamples: int = 1000,
                        seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    return bootstrap(lambda y, p: binary_metrics(y, p, threshold), (labels, probabilities), n_resamples, seed, level)


def evaluate_predictions(labels, probabilities, threshold: float, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Metrics, intervals and confusion matrix of one system on one set of records, ready for JSON."""
    probabilities = np.asarray(probabilities, dtype=float)
    return {**evaluate_decisions(labels, probabilities >= threshold, probabilities, n_resamples, seed),
            "threshold": float(threshold)}


def evaluate_decisions(labels, predicted, scores, n_resamples: int = 1000, seed: int = 0) -> dict:
    """As `evaluate_predictions`, for AF decisions made by another rule (e.g. a four-class model's), ranked by
    `scores`."""
    labels, predicted = np.asarray(labels).astype(int), np.asarray(predicted).astype(int)
    scores = np.asarray(scores, dtype=float)
    matrix = confusion_matrix(labels, predicted, labels=[0, 1])
    return {
        "n_records": int(len(labels)),
        "n_positive": int(labels.sum()),
        "metrics": {k: float(v) for k, v in decision_metrics(labels, predicted, scores).items()},
        "intervals_95": bootstrap(decision_metrics, (labels, predicted, scores), n_resamples, seed),
        "confusion_matrix": {"tn": int(matrix[0, 0]), "fp": int(matrix[0, 1]),
                             "fn": int(matrix[1, 0]), "tp": int(matrix[1, 1])},
    }


def format_evaluation(title: str, result: dict) -> str:
    """A readable block: one metric a line with its interval, then the confusion matrix."""
    rule = f"threshold {result['threshold']:.4f}" if "threshold" in result else "decided by the model's class offsets"
    lines = [f"{title}: {result['n_records']} records, {result['n_positive']} AF, {rule}"]
    for name in METRIC_NAMES:
        low, high = result["intervals_95"][name]
        lines.append(f"  {name:<12} {result['metrics'][name]:.4f}  (95% CI {low:.4f}-{high:.4f})")
    cm = result["confusion_matrix"]
    lines.append(f"  confusion    true N: {cm['tn']} predicted N, {cm['fp']} predicted AF | "
                 f"true AF: {cm['fn']} predicted N, {cm['tp']} predicted AF")
    return "\n".join(lines)
