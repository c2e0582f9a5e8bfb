"""Do RR-interval features add to the four-class MS-CNN? Validation only: reads no test figure.

A gradient-boosted classifier is trained on the training split's RR features (the seven written figures and others
from the AF-detection literature that tell AF from ectopic beats: robust spreads, successive-ratio counts, the
coefficient of sample entropy, turning points, the occupancy of the Lorenz plot of successive differences). Its
class probabilities are fused with the MS-CNN's whole-record ones as log P_cnn + w log P_rr. The weight is chosen the
way evaluation chooses offsets and checked the same way: on one half of validation, scored on the other, many times
(stratified halvings), against w = 0.

    python benchmarks/rhythm_feature_fusion.py --data ../shared/data/cinc2017/training2017 \
        --runs runs/four75_seeds/seed_2/split.json:runs/four75_seeds/seed_2/encoder/eval_val/predictions.csv \
               runs/four75_seeds/seed_3/split.json:runs/four75_seeds/seed_3/encoder_checked/eval_val/predictions.csv

Prints and writes (benchmarks/results/rhythm_feature_fusion_val.json), per run: the RR classifier's validation
challenge score and AF-vs-rest F1, the fused scores at each weight (argmax, no offsets), and the held-out gain of the
weight chosen on half of validation.
"""

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedShuffleSplit

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.split import Split
from ecgllm.evaluation.four_class import CLASSES, decide, four_class_metrics, log_probabilities
from ecgllm.rhythm import MIN_BEATS, r_peak_times

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
ECTOPIC_DEVIATION = 0.15  # an RR interval this far from the median is counted as around an ectopic beat or a pause


def sample_entropy_counts(rr: np.ndarray, tolerance: float) -> tuple[int, int]:
    """Pairs of matching runs of length 1 and 2 (m = 1) in `rr` within `tolerance`; SampEn = -ln(pairs2 / pairs1)."""
    def matches(length):
        runs = np.lib.stride_tricks.sliding_window_view(rr, length)[: len(rr) - 1]
        distance = np.abs(runs[:, None, :] - runs[None, :, :]).max(axis=2)
        return int((np.sum(distance <= tolerance) - len(runs)) // 2)
    return matches(1), matches(2)


def rr_features(peak_times_s: np.ndarray) -> dict[str, float]:
    """Features of one record's R-peak times; only the beat count where too few beats were found."""
    features = {"n_beats": float(len(peak_times_s))}
    if len(peak_times_s) < MIN_BEATS:
        return features
    rr = np.diff(peak_times_s) * 1000.0
    successive, median = np.diff(rr), np.median(rr)
    ratio_change = np.abs(rr[1:] / rr[:-1] - 1)
    sd1 = np.sqrt(0.5) * successive.std()
    sd2 = np.sqrt(max(1e-9, 2 * rr.var() - 0.5 * successive.var()))
    near_median = rr[np.abs(rr / median - 1) <= ECTOPIC_DEVIATION]
    features.update(
        heart_rate=60000.0 / rr.mean(), rr_cv=rr.std() / rr.mean(), rmssd=np.sqrt(np.mean(successive ** 2)),
        prr31=np.mean(np.abs(successive) > 31), prr50=np.mean(np.abs(successive) > 50),
        iqr=(np.percentile(rr, 75) - np.percentile(rr, 25)) / median,
        median_successive=np.median(np.abs(successive)) / median, min_rr=rr.min() / median, max_rr=rr.max() / median,
        ratio_change_10=np.mean(ratio_change > 0.1), ratio_change_20=np.mean(ratio_change > 0.2),
        off_median=np.mean(np.abs(rr / median - 1) > ECTOPIC_DEVIATION),
        # premature beat then compensatory pause: ectopy, not AF
        short_long=np.mean((rr[:-1] < (1 - ECTOPIC_DEVIATION) * median) & (rr[1:] > (1 + ECTOPIC_DEVIATION) * median)),
        sd1=sd1 / median, sd2=sd2 / median, sd1_sd2=sd1 / sd2,
        # the spread left once intervals around ectopic beats are set aside: AF stays irregular
        core_cv=near_median.std() / near_median.mean() if len(near_median) > 2 else np.nan)
    matches1, matches2 = sample_entropy_counts(rr, tolerance=30.0)
    # coefficient of sample entropy (Lake & Moorman): SampEn - ln(2r) - ln(mean RR), r = 30 ms, in seconds
    features["cosen"] = (-np.log(matches2 / matches1) - np.log(0.06) - np.log(rr.mean() / 1000)
                         if matches1 and matches2 else np.nan)
    if len(successive) > 2:
        signs = np.sign(successive)
        features["turning_points"] = np.mean(signs[1:] * signs[:-1] < 0)
        cells = np.floor(np.c_[successive[1:], successive[:-1]] / 40.0).astype(int)
        features["lorenz_occupancy"] = len({tuple(c) for c in cells}) / len(cells)
    return features


def record_features(item: tuple[str, np.ndarray, float]) -> tuple[str, dict[str, float]]:
    record_id, signal, fs = item
    return record_id, rr_features(r_peak_times(signal, fs))


def fused_scores(cnn_p: np.ndarray, rr_p: np.ndarray, weight: float) -> np.ndarray:
    return log_probabilities(cnn_p) + weight * log_probabilities(rr_p)


def held_out_weight_gain(labels: np.ndarray, cnn_p: np.ndarray, rr_p: np.ndarray, repeats: int) -> dict:
    """The weight chosen on one half of validation (highest challenge score), scored on the other against w = 0."""
    halves = StratifiedShuffleSplit(n_splits=repeats, test_size=0.5, random_state=0)
    no_offsets = np.zeros(len(CLASSES))
    rows = []
    for chosen_on, held_out in halves.split(cnn_p, labels):
        weight = max(WEIGHTS, key=lambda w: four_class_metrics(
            labels[chosen_on], decide(fused_scores(cnn_p[chosen_on], rr_p[chosen_on], w), no_offsets))
            ["challenge_score"])
        chosen, none = (four_class_metrics(labels[held_out],
                                           decide(fused_scores(cnn_p[held_out], rr_p[held_out], w), no_offsets))
                        for w in (weight, 0.0))
        rows.append({"weight": weight, "challenge_gain": chosen["challenge_score"] - none["challenge_score"],
                     "af_f1_gain": chosen["f1_A"] - none["f1_A"]})
    table = pd.DataFrame(rows)
    return {"repeats": repeats, "weight_chosen_mean": float(table["weight"].mean()),
            **{f"{column}_mean": float(table[column].mean()) for column in ("challenge_gain", "af_f1_gain")},
            "share_better": float((table["challenge_gain"] > 0).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", nargs="+", required=True,
                        help="SPLIT:PREDICTIONS pairs: a four-class split and its MS-CNN's validation predictions.csv")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--results", default="benchmarks/results/rhythm_feature_fusion_val.json")
    args = parser.parse_args()

    dataset = load_cinc_folder(args.data, task="four")
    items = [(i, record.signal, record.fs) for i, record in dataset.records.items()]
    with ProcessPoolExecutor() as pool:
        features = pd.DataFrame(dict(pool.map(record_features, items, chunksize=64))).T

    results = {"features": list(features.columns), "weights": list(WEIGHTS), "runs": {}}
    for run in args.runs:
        split_path, predictions_path = run.split(":")
        split = Split.load(split_path)
        train, val = split.ids("train"), split.ids("val")
        y_train, y_val = (np.array([split.labels[i] for i in ids]) for ids in (train, val))
        classifier = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, class_weight="balanced",
                                                    random_state=split.seed)
        rr_p = classifier.fit(features.loc[train], y_train).predict_proba(features.loc[val])
        cnn = pd.read_csv(predictions_path).set_index("record").loc[val]
        if not np.array_equal(cnn["label"].to_numpy(), y_val):
            raise SystemExit(f"{predictions_path}: its records' labels differ from {split_path}'s validation split")
        cnn_p = cnn[[f"p_{c}_whole" for c in CLASSES]].to_numpy(float)
        no_offsets = np.zeros(len(CLASSES))
        rr_alone = four_class_metrics(y_val, rr_p.argmax(axis=1))
        fused = {str(w): four_class_metrics(y_val, decide(fused_scores(cnn_p, rr_p, w), no_offsets))
                 for w in WEIGHTS}
        results["runs"][run] = {
            "rr_classifier": {"challenge_score": rr_alone["challenge_score"], "af_f1": rr_alone["f1_A"]},
            "fused": {w: {"challenge_score": m["challenge_score"], "af_f1": m["f1_A"]} for w, m in fused.items()},
            "held_out": held_out_weight_gain(y_val, cnn_p, rr_p, args.repeats)}
        print(f"{run}\n  RR features alone: challenge {rr_alone['challenge_score']:.4f}, AF F1 {rr_alone['f1_A']:.4f}")
        for w, m in fused.items():
            print(f"  w {w}: challenge {m['challenge_score']:.4f}, AF F1 {m['f1_A']:.4f}")
        check = results["runs"][run]["held_out"]
        print(f"  weight chosen on half, other half: challenge {check['challenge_gain_mean']:+.4f}, "
              f"AF F1 {check['af_f1_gain_mean']:+.4f} (better in {check['share_better']:.0%})")
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(results, indent=1))
    print(f"written to {args.results}")


if __name__ == "__main__":
    main()
