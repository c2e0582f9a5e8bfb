"""ECG-LLM against the MS-CNN it is built on, over several seeds or folds: one number per run is one draw, not a result.

Each seed is a whole `ecgllm run` (its own split, encoder and LLM, all from that seed) evaluated by scoring only (no
generation: the decisions and metrics come from scoring). With `--folds K` the runs are instead the K folds of one
seed (the first of `--seeds`): fold k is the test set of run k, so every record is tested once (all 738 AF records
instead of 111). Variants retrain only the LLM of each seed's run, with
some of its settings changed, on the same split, encoder and feature cache. Both systems are compared on the same
test records at thresholds chosen on validation (the CNN averaged over the record's windows, as the cpu LLM sees
it).

    python benchmarks/seed_comparison.py --data ../shared/data/cinc2017/training2017 --out runs/seeds \\
        --seeds 42 1 7 [--variant no-verdict] [--variant cross-fit] [--folds 5]

Prints validation figures first (choose a variant on these), then test figures: per run, mean +- SD, and the paired
difference LLM - CNN with a t interval over runs. Writes benchmarks/results/seed_comparison_<preset>.json.
A finished seed or variant is read back, not retrained, so the command resumes where it stopped.
"""

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.split import Split, make_fold_split
from ecgllm.evaluation.compare import mean_sd, paired_over_runs
from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
from ecgllm.llm.training import train_llm
from ecgllm.modeling_utils import CONFIG_NAME
from ecgllm.runs.job import RUN_PRESETS, evaluate_run_llm, run
from ecgllm.runs.layout import RunLayout

SCORE_ONLY = {"generate": False}
# LLM settings changed from the preset, by name; each is trained for every seed.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "no-verdict": ({"verdict_input": False}, {}),
    # Each training record's verdict from one of 5 encoders trained without it (llm/cross_fit.py).
    "cross-fit": ({}, {"verdict_folds": 5}),
}
METRICS = ("f1", "roc_auc", "pr_auc")


def llm_figures(result: dict) -> dict:
    cnn = result["comparison_with_task1"]["whole"]["cnn"]
    return {"validation_f1": result["validation"]["metrics"]["f1"],
            "validation_roc_auc": result["validation"]["metrics"]["roc_auc"],
            "llm": {m: result["scoring"]["metrics"][m] for m in METRICS},
            "cnn": {m: cnn["metrics"][m] for m in METRICS},
            "mcnemar": result["comparison_with_task1"]["whole"]["mcnemar"],
            "n_test": result["scoring"]["n_records"], "n_test_af": result["scoring"]["n_positive"]}


def train_variant(name: str, layout: RunLayout, data: Path, preset: str, seed: int) -> dict:
    """The seed's run with only the LLM changed; written to RUN/variants/NAME."""
    model_changes, training_changes = VARIANTS[name]
    model_config, train_config, _ = LLM_PRESETS[RUN_PRESETS[preset][1]]
    model_config = dataclasses.replace(model_config, **model_changes)
    train_config = dataclasses.replace(train_config, seed=seed, **training_changes)
    folder = layout.root / "variants" / name
    metrics = folder / "eval" / "metrics.json"
    if not metrics.exists():
        dataset = load_cinc_folder(data, task="binary", progress=False)
        split = Split.load(layout.split)
        if not (folder / "final" / CONFIG_NAME).exists():
            train_llm(dataset, split, layout.encoder, folder, model_config, train_config, layout.cache)
        evaluate_run_llm(folder / "final", dataset, split, folder / "eval", layout.cache, layout.encoder_eval,
                         SCORE_ONLY, seed)
    return llm_figures(json.loads(metrics.read_text()))


def summarise(per_seed: dict[str, dict]) -> dict:
    seeds = sorted(per_seed)
    out = {"validation_f1": mean_sd([per_seed[s]["validation_f1"] for s in seeds])}
    for metric in METRICS:
        llm = [per_seed[s]["llm"][metric] for s in seeds]
        cnn = [per_seed[s]["cnn"][metric] for s in seeds]
        out[metric] = {"llm": mean_sd(llm), "cnn": mean_sd(cnn),
                       "llm_minus_cnn": paired_over_runs([a - b for a, b in zip(llm, cnn)])}
    return out


def format_table(name: str, per_seed: dict[str, dict], summary: dict) -> str:
    lines = [f"{name}: test, {len(per_seed)} runs", f"{'run':>8} {'LLM F1':>8} {'CNN F1':>8} {'LLM AUC':>8} "
             f"{'CNN AUC':>8} {'LLM PR':>8} {'CNN PR':>8} {'McNemar CNN/LLM only':>22}"]
    for seed, f in sorted(per_seed.items()):
        mc = f["mcnemar"]
        lines.append(f"{seed:>8} {f['llm']['f1']:8.4f} {f['cnn']['f1']:8.4f} {f['llm']['roc_auc']:8.4f} "
                     f"{f['cnn']['roc_auc']:8.4f} {f['llm']['pr_auc']:8.4f} {f['cnn']['pr_auc']:8.4f} "
                     f"{mc['only_a_right']:>11}/{mc['only_b_right']}")
    for metric in METRICS:
        s = summary[metric]
        d = s["llm_minus_cnn"]
        interval = "" if d["interval_95"] is None else f" (95% CI {d['interval_95'][0]:+.4f} to " \
                                                       f"{d['interval_95'][1]:+.4f})"
        lines.append(f"{metric:>8}: LLM {s['llm']['mean']:.4f} +- {s['llm']['sd']:.4f}, CNN {s['cnn']['mean']:.4f} "
                     f"+- {s['cnn']['sd']:.4f}; LLM - CNN {d['mean']:+.4f}{interval}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs, one per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 7])
    parser.add_argument("--preset", default="cpu", choices=sorted(RUN_PRESETS))
    parser.add_argument("--variant", action="append", default=[], choices=sorted(VARIANTS))
    parser.add_argument("--folds", type=int, default=None, help="K folds of the first seed instead of seeds")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    results = args.results or Path(__file__).parent / "results" / f"seed_comparison_{args.preset}.json"

    started = time.perf_counter()
    systems: dict[str, dict[str, dict]] = {"preset": {}, **{v: {} for v in args.variant}}
    runs = [(f"seed_{s}", s, None) for s in args.seeds] if args.folds is None else \
        [(f"fold_{k}", args.seeds[0], k) for k in range(args.folds)]
    # Every run before any variant: the comparison with the CNN is complete first.
    for name, seed, fold in runs:
        layout = RunLayout(args.out / name)
        if fold is not None and not layout.split.exists():  # `run` reuses a split it finds
            labels = load_cinc_folder(args.data, task="binary", progress=False).labels
            make_fold_split(labels, "binary", args.folds, fold, seed).save(layout.split)
        result = run(args.data, layout.root, args.preset, seed, evaluation=SCORE_ONLY, task="binary")
        systems["preset"][name] = llm_figures(result["llm"])
    for variant in args.variant:
        for name, seed, _ in runs:
            systems[variant][name] = train_variant(variant, RunLayout(args.out / name), args.data, args.preset, seed)
    summaries = {name: summarise(per_seed) for name, per_seed in systems.items()}

    print("validation F1 (the only figure to choose a variant on):")
    for name, s in summaries.items():
        print(f"  {name:>12}: {s['validation_f1']['mean']:.4f} +- {s['validation_f1']['sd']:.4f}")
    for name in systems:
        print("\n" + format_table(name, systems[name], summaries[name]))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "command": "python " + " ".join(sys.argv), "machine": f"{platform.node()}, {platform.processor()}",
        "evaluation": "scoring only, thresholds chosen on validation; CNN averaged over the record's windows",
        "variants": {name: VARIANTS[name] for name in args.variant},
        "per_run": systems, "summary": summaries, "wall_seconds": round(time.perf_counter() - started)},
        indent=2))
    print(f"\nwrote {results}")


if __name__ == "__main__":
    main()
