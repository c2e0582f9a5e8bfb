"""Would an ensemble of MS-CNNs beat the run's one? A proxy from encoders already on disk, decided on validation first.

A run trained with cross-fitted verdicts (`--verdict-folds 3`) keeps, beside its four-class encoder, three fold
encoders (ENCODER/cross_fit/fold_k), each trained like it on two thirds of the training records. The ensemble here
averages the whole-record class probabilities of all four; a real ensemble (K encoders on all training records) would
have stronger members, so this bounds its gain from below. Each system is scored at its own decision rule chosen on
validation (the encoder's `class_offsets`; the ensemble's by `choose_checked_offsets`, as training chooses them).

Reads the predictions `ecgllm encoder evaluate` writes at its default places: MODEL/eval_val (`--split-name val`) and,
with `--test`, MODEL/eval, for every member. The rule (the one fixed for variants in
benchmarks/results/four_class_llm_cross_fit_fresh_seeds_choice.json): adopt if the validation log-loss of the class
probabilities, paired per record and pooled over the seeds, is lower with a 95 % bootstrap interval below 0, and
neither mean validation figure (challenge score, AF-vs-rest F1) falls more than `--guard` below the single encoder's.
Commit the decision before passing `--test`, which adds each seed's test figures and the paired differences.

    python benchmarks/encoder_ensemble.py --guard 0.01 --run 6 runs/four75_seeds/seed_6 \\
        --run 8 runs/four75_seeds/seed_8 --run 9 runs/four75_seeds/seed_9 [--test] [--results FILE]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ecgllm.evaluation.compare import mean_sd, paired_over_runs, pooled_difference
from ecgllm.evaluation.four_class import (
    CLASSES,
    choose_checked_offsets,
    compare_four_class,
    decide,
    evaluate_four_class,
    four_class_metrics,
    headline_figures,
    log_probabilities,
)

SYSTEMS = ("single", "ensemble")
FOLDS = 3
OFFSET_CHECK_REPEATS = 100  # as `ecgllm encoder train` checks its offsets


def members(run: Path) -> list[Path]:
    return [run / "encoder", *(run / "encoder" / "cross_fit" / f"fold_{k}" for k in range(FOLDS))]


def read_probabilities(model: Path, split_name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Records (sorted), labels and whole-record class probabilities [n, 4] of one member on one split."""
    folder = model / ("eval" if split_name == "test" else f"eval_{split_name}")
    path = folder / "predictions.csv"
    if not path.exists():
        sys.exit(f"{path}: missing; run `ecgllm encoder evaluate --model {model} --split-name {split_name} ...`")
    table = pd.read_csv(path).sort_values("record")
    return (table["record"].tolist(), table["label"].to_numpy(int),
            table[[f"p_{c}_whole" for c in CLASSES]].to_numpy(float))


def seed_scores(run: Path, split_name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels and each system's normalised log P [n, 4] on one split of one run."""
    read = [read_probabilities(model, split_name) for model in members(run)]
    if any(records != read[0][0] for records, _, _ in read):
        sys.exit(f"{run}: the encoders scored different {split_name} records")
    probabilities = {"single": read[0][2], "ensemble": np.mean([p for _, _, p in read], axis=0)}
    scores = {}
    for system, p in probabilities.items():
        log_p = log_probabilities(p)
        scores[system] = log_p - np.logaddexp.reduce(log_p, axis=1, keepdims=True)
    return read[0][1], scores


def decision_rules(run: Path, labels: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, list[float]]:
    config = json.loads((run / "encoder" / "config.json").read_text())
    ensemble = choose_checked_offsets(labels, scores["ensemble"], OFFSET_CHECK_REPEATS)
    return {"single": config["class_offsets"]["whole"], "ensemble": ensemble["offsets"]}


def validation(runs: dict[str, Path], guard: float) -> tuple[dict, dict]:
    per_seed, losses, rules = {}, [], {}
    for seed, run in runs.items():
        labels, scores = seed_scores(run, "val")
        rules[seed] = decision_rules(run, labels, scores)
        loss = {system: -scores[system][np.arange(len(labels)), labels] for system in SYSTEMS}
        losses.append(loss["ensemble"] - loss["single"])
        per_seed[seed] = {system: {**four_class_metrics(labels, decide(scores[system], rules[seed][system])),
                                   "log_loss": float(loss[system].mean()), "offsets": rules[seed][system]}
                          for system in SYSTEMS}
    pooled = pooled_difference(losses)
    means = {figure: {system: float(np.mean([per_seed[s][system][figure] for s in per_seed])) for system in SYSTEMS}
             for figure in ("challenge_score", "f1_A", "log_loss")}
    within_guard = all(means[f]["ensemble"] >= means[f]["single"] - guard for f in ("challenge_score", "f1_A"))
    return {"per_seed": per_seed, "means": means, "guard": guard,
            "log_loss_ensemble_minus_single": pooled, "figures_within_guard": within_guard,
            "ensemble_adopted": bool(pooled["interval_95"][1] < 0 and within_guard)}, rules


def test(runs: dict[str, Path], rules: dict) -> dict:
    per_seed, differences = {}, {"challenge_score": [], "af_f1": []}
    for seed, run in runs.items():
        labels, scores = seed_scores(run, "test")
        results = {system: evaluate_four_class(labels, scores[system], rules[seed][system]) for system in SYSTEMS}
        paired = compare_four_class(labels, *(decide(scores[s], rules[seed][s]) for s in SYSTEMS))
        for name in differences:
            differences[name].append(paired["difference_b_minus_a"][name])
        per_seed[seed] = {**{s: {**headline_figures(results[s]),
                                 "confusion": results[s]["confusion_matrix"]["counts"]} for s in SYSTEMS},
                          "ensemble_minus_single": paired}
    figures = [name for name in next(iter(per_seed.values()))["single"] if name != "confusion"]
    return {"per_seed": per_seed,
            "means": {s: {f: mean_sd([per_seed[k][s][f] for k in per_seed]) for f in figures} for s in SYSTEMS},
            "ensemble_minus_single_over_seeds": {n: paired_over_runs(v) for n, v in differences.items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", nargs=2, action="append", required=True, metavar=("SEED", "RUN_DIR"))
    parser.add_argument("--guard", type=float, required=True)
    parser.add_argument("--test", action="store_true", help="also read test figures (after the decision is committed)")
    parser.add_argument("--results", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    runs = {seed: Path(run) for seed, run in args.run}

    result = {"command": " ".join(["python", "benchmarks/encoder_ensemble.py", *(argv or sys.argv[1:])])}
    result["validation"], rules = validation(runs, args.guard)
    v = result["validation"]
    for seed, systems in v["per_seed"].items():
        print(f"seed {seed} validation: " + "; ".join(
            f"{s} challenge {m['challenge_score']:.4f} AF F1 {m['f1_A']:.4f} log-loss {m['log_loss']:.4f}"
            for s, m in systems.items()))
    for figure, m in v["means"].items():
        print(f"mean validation {figure}: single {m['single']:.4f}, ensemble {m['ensemble']:.4f}")
    loss = v["log_loss_ensemble_minus_single"]
    print("validation log-loss, ensemble - single over {} records: {:+.4f} [{:+.4f} to {:+.4f}]".format(
        loss["n_records"], loss["mean"], *loss["interval_95"]))
    print(f"both mean figures within {args.guard} of the single encoder's: {v['figures_within_guard']}")
    print(f"ensemble adopted: {v['ensemble_adopted']}")
    if args.test:
        result["test"] = test(runs, rules)
        for system, figures in result["test"]["means"].items():
            print(f"mean test, {system}: " + ", ".join(f"{name} {f['mean']:.4f} (SD {f['sd']:.4f})"
                                                        for name, f in figures.items()))
        for seed, block in result["test"]["per_seed"].items():
            paired = block["ensemble_minus_single"]
            d, i = paired["difference_b_minus_a"], paired["intervals_95"]
            print(f"seed {seed} test, ensemble - single: " + ", ".join(
                f"{n} {d[n]:+.4f} [{i[n][0]:+.4f} to {i[n][1]:+.4f}]" for n in d))
        for name, d in result["test"]["ensemble_minus_single_over_seeds"].items():
            interval = "[{:+.4f} to {:+.4f}]".format(*d["interval_95"]) if d["interval_95"] else "(one seed)"
            print(f"ensemble - single over seeds, test {name}: {d['mean']:+.4f} {interval}")
    if args.results:
        args.results.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
