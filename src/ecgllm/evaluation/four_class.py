"""Four-class (CinC 2017: N, A, O, ~) metrics and decision rule.

A four-class system gives each record a score per class (log-probabilities, or any log-scale scores). It decides the
class whose score plus that class's offset is highest; the offsets are chosen on validation to maximise the
challenge score, the mean F1 of N, A and O (the challenge left the noise class out of its score). AF against the rest
is read off the same decisions (AF decided or not) and ranked by the AF score minus the best other class's.
"""

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

from ecgllm.data.labels import TASKS
from ecgllm.evaluation.compare import mcnemar
from ecgllm.evaluation.metrics import bootstrap, decision_metrics

CLASSES = TASKS["four"]
AF = CLASSES.index("A")
SCORED_CLASSES = (0, 1, 2)  # N, A, O: the classes of the challenge score
# Tried smallest first, so that among equal scores the smallest offset wins.
OFFSET_GRID = sorted(np.round(np.arange(-4.0, 4.0001, 0.25), 2), key=abs)


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Class probabilities -> scores for `decide` (finite where a probability rounds to 0)."""
    return np.log(np.maximum(probabilities, 1e-12))


def decide(scores: np.ndarray, offsets) -> np.ndarray:
    """scores [n, 4], offsets [4] -> decided class [n]."""
    return np.argmax(np.asarray(scores) + np.asarray(offsets, dtype=float), axis=1)


def af_score(scores: np.ndarray) -> np.ndarray:
    """[n, 4] -> [n]: how far the AF score is above the best other class (the AF-vs-rest ranking)."""
    scores = np.asarray(scores, dtype=float)
    others = np.delete(scores, AF, axis=1)
    return scores[:, AF] - others.max(axis=1)


def af_log_odds(log_p: np.ndarray) -> np.ndarray:
    """[n, 4] log P of each class -> [n]: log P(AF) - log P(not AF), what P(AF) is shown from."""
    log_p = np.asarray(log_p, dtype=float)
    return log_p[:, AF] - np.logaddexp.reduce(np.delete(log_p, AF, axis=1), axis=1)


def class_f1(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return f1_score(labels, predicted, labels=list(range(len(CLASSES))), average=None, zero_division=0.0)


def _challenge(f1: np.ndarray) -> float:
    """The CinC 2017 score from the per-class F1: the mean F1 of N, A and O."""
    return float(np.mean(f1[list(SCORED_CLASSES)]))


def challenge_score(labels: np.ndarray, predicted: np.ndarray) -> float:
    return _challenge(class_f1(labels, predicted))


def choose_offsets(labels: np.ndarray, scores: np.ndarray, rounds: int = 3) -> list[float]:
    """Per-class offsets (N's fixed at 0: only differences matter) that maximise the challenge score, by coordinate
    ascent over OFFSET_GRID from all zeros; among equal scores the smallest offset wins. Call on validation only."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    offsets = np.zeros(len(CLASSES))
    best = challenge_score(labels, decide(scores, offsets))
    for _ in range(rounds):
        improved = False
        for c in range(1, len(CLASSES)):
            for value in OFFSET_GRID:
                trial = offsets.copy()
                trial[c] = value
                score = challenge_score(labels, decide(scores, trial))
                if score > best + 1e-12:
                    best, offsets, improved = score, trial, True
        if not improved:
            break
    return [float(v) for v in offsets]


def offsets_on_halves(labels: np.ndarray, scores: np.ndarray, repeats: int, seed: int = 0) -> list[dict]:
    """How far `choose_offsets` carries to records it was not chosen on: validation cut in two halves (stratified by
    class where every class has two records) `repeats` times, offsets chosen on one half, and the other half's
    `four_class_metrics` with them ("chosen") and with none ("none")."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    stratify = np.unique(labels, return_counts=True)[1].min() >= 2
    halves = (StratifiedShuffleSplit if stratify else ShuffleSplit)(n_splits=repeats, test_size=0.5, random_state=seed)
    rows = []
    for chosen_on, held_out in halves.split(scores, labels):
        offsets = choose_offsets(labels[chosen_on], scores[chosen_on])
        rows.append({"offsets": offsets,
                     **{name: four_class_metrics(labels[held_out], decide(scores[held_out], rule))
                        for name, rule in (("chosen", offsets), ("none", np.zeros(scores.shape[1])))}})
    return rows


def choose_checked_offsets(labels: np.ndarray, scores: np.ndarray, repeats: int, seed: int = 0) -> dict:
    """`choose_offsets` on all of validation, kept only if offsets chosen on half of it raise the other half's challenge
    score on average (`offsets_on_halves`), otherwise none: with sharp scores the coordinate ascent follows a
    handful of records, and such offsets gain nothing on records they were not chosen on
    (benchmarks/offset_choice_stability.py). repeats 0: the offsets, unchecked. Returns the offsets and the check
    as checkpoints and metrics record it: repeats, the mean held-out gain, whether the chosen offsets were kept."""
    offsets = choose_offsets(labels, scores)
    if repeats == 0:
        return {"offsets": offsets, "check": {"repeats": 0, "held_out_gain": None, "kept": True}}
    rows = offsets_on_halves(labels, scores, repeats, seed)
    gain = float(np.mean([r["chosen"]["challenge_score"] - r["none"]["challenge_score"] for r in rows]))
    kept = gain > 0
    return {"offsets": offsets if kept else [0.0] * len(offsets),
            "check": {"repeats": repeats, "held_out_gain": gain, "kept": kept}}


def four_class_metrics(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    f1 = class_f1(labels, predicted)
    return {"challenge_score": _challenge(f1),
            "accuracy": float(np.mean(labels == predicted)),
            **{f"f1_{label}": float(v) for label, v in zip(CLASSES, f1)}}


def _af_metrics(labels: np.ndarray, predicted: np.ndarray, ranking: np.ndarray) -> dict[str, float]:
    return {k: float(v) for k, v in decision_metrics(labels == AF, predicted == AF, ranking).items()}


def evaluate_four_class(labels, scores, offsets, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Everything the four-class task reports for one system on one set of records, ready for JSON: per-class F1 and
    the challenge score, AF against all other classes, the N-vs-A metrics on the N and A records alone (a record of
    them decided O or ~ counts as "not AF"), the share of O and ~ records called AF, and the confusion matrix; each
    metric with a 95% bootstrap interval."""
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    predicted, ranking = decide(scores, offsets), af_score(scores)
    n_a = np.isin(labels, (0, 1))
    matrix = confusion_matrix(labels, predicted, labels=list(range(len(CLASSES))))
    return {
        "n_records": int(len(labels)),
        "class_counts": {label: int((labels == c).sum()) for c, label in enumerate(CLASSES)},
        "offsets": [float(v) for v in offsets],
        "four_class": {"metrics": four_class_metrics(labels, predicted),
                       "intervals_95": bootstrap(four_class_metrics, (labels, predicted), n_resamples, seed)},
        "af_vs_rest": {"metrics": _af_metrics(labels, predicted, ranking),
                       "intervals_95": bootstrap(_af_metrics, (labels, predicted, ranking), n_resamples, seed)},
        "n_vs_a": {"n_records": int(n_a.sum()), "metrics": _af_metrics(labels[n_a], predicted[n_a], ranking[n_a]),
                   "intervals_95": bootstrap(_af_metrics, (labels[n_a], predicted[n_a], ranking[n_a]), n_resamples,
                                             seed)},
        "called_af": {label: float(np.mean(predicted[labels == c] == AF)) if (labels == c).any() else float("nan")
                      for c, label in enumerate(CLASSES)},
        "confusion_matrix": {"rows_true_columns_predicted": list(CLASSES), "counts": matrix.tolist()},
    }


# The figures compared across seeds and variants, and where evaluate_four_class keeps each.
HEADLINE_FIGURES = {"challenge_score": ("four_class", "challenge_score"), "af_f1": ("af_vs_rest", "f1"),
                    "af_roc_auc": ("af_vs_rest", "roc_auc"), "n_vs_a_f1": ("n_vs_a", "f1")}


def headline_figures(result: dict) -> dict[str, float]:
    """One system's headline figures from an evaluate_four_class result, and the shares of O and ~ called AF."""
    return {**{name: result[block]["metrics"][metric] for name, (block, metric) in HEADLINE_FIGURES.items()},
            "o_called_af": result["called_af"]["O"], "noisy_called_af": result["called_af"]["~"]}


def compare_four_class(labels, predicted_a, predicted_b, n_resamples: int = 1000, seed: int = 0) -> dict:
    """System b against system a on the same records: the challenge-score and AF-vs-rest F1 differences (b - a) with
    paired bootstrap intervals, and McNemar's test on exact class correctness."""
    labels, predicted_a, predicted_b = (np.asarray(v).astype(int) for v in (labels, predicted_a, predicted_b))

    def differences(y, a, b):  # the F1 of class A is the F1 of AF against the rest
        f1_a, f1_b = class_f1(y, a), class_f1(y, b)
        return {"challenge_score": _challenge(f1_b) - _challenge(f1_a), "af_f1": float(f1_b[AF] - f1_a[AF])}

    return {"difference_b_minus_a": differences(labels, predicted_a, predicted_b),
            "intervals_95": bootstrap(differences, (labels, predicted_a, predicted_b), n_resamples, seed),
            "mcnemar": mcnemar(labels, predicted_a, predicted_b)}


def format_four_class(title: str, result: dict) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in result["class_counts"].items())
    lines = [f"{title}: {result['n_records']} records ({counts}), class offsets "
             + ", ".join(f"{label} {v:+.2f}" for label, v in zip(CLASSES, result["offsets"]))]
    for block, names in (("four_class", ("challenge_score", "f1_N", "f1_A", "f1_O", "f1_~", "accuracy")),
                         ("af_vs_rest", ("f1", "sensitivity", "specificity", "precision", "roc_auc", "pr_auc")),
                         ("n_vs_a", ("f1", "sensitivity", "specificity", "roc_auc"))):
        heading = {"four_class": "four classes", "af_vs_rest": "AF vs all other classes",
                   "n_vs_a": f"N vs A on the {result.get('n_vs_a', {}).get('n_records', '')} N and A records"}[block]
        lines.append(f"  {heading}:")
        for name in names:
            low, high = result[block]["intervals_95"][name]
            lines.append(f"    {name:<16} {result[block]['metrics'][name]:.4f}  (95% CI {low:.4f}-{high:.4f})")
    lines.append("  called AF: " + ", ".join(f"{k} {v:.1%}" for k, v in result["called_af"].items()))
    lines.append("  confusion (rows true, columns predicted " + " ".join(CLASSES) + "): "
                 + " | ".join(f"{label}: " + " ".join(str(v) for v in row)
                              for label, row in zip(CLASSES, result["confusion_matrix"]["counts"])))
    return "\n".join(lines)
