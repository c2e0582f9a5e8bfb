"""A four-class LLM variant against the preset LLM over several seeds, decided on validation before test is read.

Reads, for each seed, the two folders `ecgllm llm evaluate` wrote (preset, variant), each scored at the class offsets
it chose on its own validation records. By default only their validation blocks: each seed's challenge score and
AF-vs-rest F1 (f1_A), their means, and whether the variant's means beat the preset's by `--margin` on both (the rule
of e.g. benchmarks/results/four_class_llm_cross_fit_seeds_choice.json). `--rule log-loss` decides instead on the
validation log-loss of the four-sentence softmax, pooled over the seeds' records and paired (adopt if the 95 %
bootstrap interval of variant - preset lies below 0 and neither mean figure above falls more than `--guard` below the
preset's): a ~0.01 difference in challenge score is beyond what 853 validation records at chosen offsets resolve
(benchmarks/results/four_class_llm_cross_fit_fresh_seeds_choice.json). Commit the decision before passing `--test`,
which adds the test figures of each seed, their means, and the paired difference variant - preset on each seed's test
records (bootstrap over records, McNemar) and over seeds (t interval).

    python benchmarks/llm_variant_seeds.py --margin 0.005 \\
        --pair 2 runs/four75_seeds/seed_2/llm/eval_checked runs/four75_seeds/seed_2/llm_cross_fit3/eval \\
        --pair 3 runs/four75_seeds/seed_3/llm/eval runs/four75_seeds/seed_3/llm_cross_fit3/eval ... \\
        [--rule log-loss --guard 0.01] [--test] [--results benchmarks/results/NAME.json]
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from ecgllm.evaluation.compare import mean_sd, paired_over_runs, pooled_difference
from ecgllm.evaluation.four_class import CLASSES, compare_four_class, headline_figures

SYSTEMS = ("preset", "variant")
VALIDATION_FIGURES = {"challenge_score": "challenge_score", "af_vs_rest_f1": "f1_A"}


def _metrics(eval_dir: Path) -> dict:
    path = eval_dir / "metrics.json"
    if not path.exists():
        raise SystemExit(f"{path}: missing; run `ecgllm llm evaluate --out {eval_dir}` first")
    metrics = json.loads(path.read_text())
    if metrics.get("task") != "four":
        raise SystemExit(f"{path}: not a four-class LLM evaluation")
    return metrics


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _test_decisions(eval_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Records, labels and the decisions made at the validation offsets, as `ecgllm llm evaluate` wrote them."""
    rows = _rows(eval_dir / "predictions.csv")
    return ([r["record"] for r in rows], np.array([int(r["label"]) for r in rows]),
            np.array([int(r["decision"]) for r in rows]))


def _validation_losses(eval_dir: Path) -> tuple[list[str], np.ndarray]:
    """Records and each one's log-loss: -log of the probability the four-sentence softmax gives its true class."""
    rows = _rows(eval_dir / "validation_predictions.csv")
    log_p = np.array([[float(r[f"log_p_{c}"]) for c in CLASSES] for r in rows])
    log_p -= logsumexp(log_p, axis=1, keepdims=True)  # written normalised; this undoes the rounding to 6 places
    labels = np.array([int(r["label"]) for r in rows])
    return [r["record"] for r in rows], -log_p[np.arange(len(rows)), labels]


def log_loss_difference(pairs: list[tuple[str, Path, Path]]) -> dict:
    """Validation log-loss per seed and variant - preset paired per record, pooled over the seeds' records."""
    per_seed, differences = {}, []
    for seed, preset_dir, variant_dir in pairs:
        records_p, loss_p = _validation_losses(preset_dir)
        records_v, loss_v = _validation_losses(variant_dir)
        if records_p != records_v:
            raise SystemExit(f"seed {seed}: {preset_dir} and {variant_dir} scored different validation records")
        per_seed[seed] = {"preset": float(loss_p.mean()), "variant": float(loss_v.mean())}
        differences.append(loss_v - loss_p)
    pooled = pooled_difference(differences)
    return {"per_seed": per_seed, "variant_minus_preset": pooled["mean"], "interval_95": pooled["interval_95"],
            "n_records": pooled["n_records"]}


def validation_figures(metrics: dict[str, dict[str, dict]]) -> dict:
    """`metrics[seed][system]`: the metrics.json of that seed's preset or variant evaluation."""
    per_seed = {seed: {name: {system: systems[system]["validation"]["metrics"][key] for system in SYSTEMS}
                       for name, key in VALIDATION_FIGURES.items()} for seed, systems in metrics.items()}
    means = {name: {system: float(np.mean([per_seed[s][name][system] for s in per_seed])) for system in SYSTEMS}
             for name in VALIDATION_FIGURES}
    return {"per_seed": per_seed, "means": means}


def means_ahead(means: dict[str, dict[str, float]], margin: float) -> bool:
    """Whether the variant's mean beats the preset's by `margin` on every figure (a negative margin: a guard)."""
    return all(m["variant"] >= m["preset"] + margin for m in means.values())


def compare_on_test(pairs: list[tuple[str, Path, Path]], metrics: dict[str, dict[str, dict]]) -> dict:
    per_seed, differences = {}, {"challenge_score": [], "af_f1": []}
    for seed, preset_dir, variant_dir in pairs:
        figures = {system: headline_figures(metrics[seed][system]["scoring"]) for system in SYSTEMS}
        records_p, labels, decided_p = _test_decisions(preset_dir)
        records_v, _, decided_v = _test_decisions(variant_dir)
        if records_p != records_v:
            raise SystemExit(f"seed {seed}: {preset_dir} and {variant_dir} scored different test records")
        paired = compare_four_class(labels, decided_p, decided_v)
        for name in differences:
            differences[name].append(paired["difference_b_minus_a"][name])
        per_seed[seed] = {**figures, "variant_minus_preset": paired}
    means = {system: {name: mean_sd([per_seed[s][system][name] for s in per_seed]) for name in figures[system]}
             for system in SYSTEMS}
    return {"per_seed": per_seed, "means": means,
            "variant_minus_preset_over_seeds": {name: paired_over_runs(v) for name, v in differences.items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", nargs=3, action="append", required=True,
                        metavar=("SEED", "PRESET_EVAL", "VARIANT_EVAL"))
    parser.add_argument("--rule", choices=("figures", "log-loss"), default="figures")
    parser.add_argument("--margin", type=float, default=None,
                        help="rule 'figures': both validation means must beat the preset's by this")
    parser.add_argument("--guard", type=float, default=None,
                        help="rule 'log-loss': neither validation mean may fall more than this below the preset's")
    parser.add_argument("--test", action="store_true", help="also read test figures (after the decision is committed)")
    parser.add_argument("--results", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if (args.margin if args.rule == "figures" else args.guard) is None:
        parser.error("--rule figures needs --margin, --rule log-loss needs --guard")
    pairs = [(seed, Path(p), Path(v)) for seed, p, v in args.pair]
    metrics = {seed: {"preset": _metrics(p), "variant": _metrics(v)} for seed, p, v in pairs}

    result = {"command": " ".join(["python", "benchmarks/llm_variant_seeds.py", *(argv or sys.argv[1:])]),
              "pairs": {seed: {"preset": str(p), "variant": str(v)} for seed, p, v in pairs},
              "validation": {"rule": args.rule, **validation_figures(metrics)}}
    validation = result["validation"]
    for seed, figures in validation["per_seed"].items():
        print(f"seed {seed} validation: " + ", ".join(f"{name} preset {f['preset']:.4f} variant {f['variant']:.4f}"
                                                      for name, f in figures.items()))
    for name, m in validation["means"].items():
        print(f"mean validation {name}: preset {m['preset']:.4f}, variant {m['variant']:.4f}")
    if args.rule == "figures":
        validation.update(margin=args.margin, variant_adopted=means_ahead(validation["means"], args.margin))
        print(f"variant adopted (both means ahead by {args.margin}): {validation['variant_adopted']}")
    else:
        losses = log_loss_difference(pairs)
        within_guard = means_ahead(validation["means"], -args.guard)
        validation.update(log_loss=losses, guard=args.guard, figures_within_guard=within_guard,
                          variant_adopted=bool(losses["interval_95"][1] < 0 and within_guard))
        for seed, loss in losses["per_seed"].items():
            print(f"seed {seed} validation log-loss: preset {loss['preset']:.4f} variant {loss['variant']:.4f}")
        print("validation log-loss, variant - preset over {} records: {:+.4f} [{:+.4f} to {:+.4f}]".format(
            losses["n_records"], losses["variant_minus_preset"], *losses["interval_95"]))
        print(f"both mean figures within {args.guard} of the preset's: {within_guard}")
        print(f"variant adopted (log-loss interval below 0, figures within the guard): {validation['variant_adopted']}")
    if args.test:
        result["test"] = compare_on_test(pairs, metrics)
        for system, figures in result["test"]["means"].items():
            print(f"mean test, {system}: " + ", ".join(f"{name} {f['mean']:.4f} (SD {f['sd']:.4f})"
                                                        for name, f in figures.items()))
        for name, d in result["test"]["variant_minus_preset_over_seeds"].items():
            interval = "[{:+.4f} to {:+.4f}]".format(*d["interval_95"]) if d["interval_95"] else "(one seed)"
            print(f"variant - preset over seeds, test {name}: {d['mean']:+.4f} {interval}")
    if args.results:
        args.results.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
