"""ECG-LLM against the MS-CNN it is built on, over several seeds or folds: one number per run is one draw, not a result.

Each seed is a whole `ecgllm run` (its own split, encoder and LLM, all from that seed) evaluated by scoring only (no
generation: the decisions and metrics come from scoring). With `--folds K` the runs are instead the K folds of one
seed (the first of `--seeds`): fold k is the test set of run k, so every record is tested once (all 738 AF records
instead of 111). Variants retrain only the LLM of each seed's run, with
some of its settings changed, on the same split, encoder and feature cache. Both systems are compared on the same
test records at thresholds chosen on validation (the CNN averaged over the record's windows, as the cpu LLM sees
it). `--task four` runs the four-class task (`ecgllm run --task four`): the challenge score (mean F1 of N, A, O),
AF-vs-rest F1 and ROC AUC over all four classes, N-vs-A F1 on the binary split's test records and the shares of O and
~ records called AF, each system at the class offsets it chose on validation.

    python benchmarks/seed_comparison.py --data ../shared/data/cinc2017/training2017 --out runs/seeds \\
        --seeds 42 1 7 [--task four] [--variant no-verdict] [--variant cross-fit] [--variant decision-weight] \\
        [--variant draws-2400] [--folds 5]

Prints validation figures first (choose a variant on these), then test figures: per run, mean +- SD, and the paired
difference LLM - CNN with a t interval over runs. Writes benchmarks/results/seed_comparison_<preset>.json
(seed_comparison_four_<preset>.json for the four-class task).
A finished seed or variant is read back, not retrained, so the command resumes where it stopped. With `--reuse`,
runs already in the results file are taken from it (their run folders may be gone, e.g. on another machine; a variant
still needs them), and the file keeps the command that measured each of them. It also keeps the hosts each run's encoder
and LLM were trained on (`trained_on`, from their host.json): the same seed on another instruction set trains another
model.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.split import Split, make_fold_split
from ecgllm.evaluation.compare import mean_sd, paired_over_runs
from ecgllm.evaluation.four_class import headline_figures
from ecgllm.llm.configuration_ecgllm import LLM_PRESETS, llm_training_preset
from ecgllm.llm.training import train_llm
from ecgllm.modeling_utils import CONFIG_NAME
from ecgllm.runs.job import RUN_PRESETS, evaluate_run_llm, run
from ecgllm.runs.layout import RunLayout
from ecgllm.utils import HOST_NAME, describe_host

SCORE_ONLY = {"generate": False}
# LLM settings changed from the preset, by name; each is trained for every seed.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "no-verdict": ({"verdict_input": False}, {}),
    # Each training record's verdict from one of 5 encoders trained without it (llm/cross_fit.py).
    "cross-fit": ({}, {"verdict_folds": 5}),
    # The answer tokens where the decision sentence parts from the others weigh 10 in the loss, every other one 1
    # (the four-class task's default already: a variant of binary runs).
    "decision-weight": ({}, {"decision_weight": 10.0}),
    # Twice the binary cpu preset's 1200 class-balanced draws (the four-class task's default already).
    "draws-2400": ({}, {"samples_per_epoch": 2400}),
}
# Test figures of each task, and the validation figure a variant is chosen on.
METRICS = {"binary": ("f1", "roc_auc", "pr_auc"),
           "four": ("challenge_score", "af_f1", "af_roc_auc", "n_vs_a_f1", "o_called_af", "noisy_called_af")}
VALIDATION = {"binary": "validation_f1", "four": "validation_challenge_score"}


def llm_figures(result: dict) -> dict:
    whole = result["comparison_with_task1"]["whole"]
    if result.get("task") == "four":
        return {"validation_challenge_score": result["validation"]["metrics"]["challenge_score"],
                "llm": headline_figures(result["scoring"]), "cnn": headline_figures(whole["cnn"]),
                "mcnemar": whole["llm_minus_cnn"]["mcnemar"], "n_test": result["scoring"]["n_records"]}
    return {"validation_f1": result["validation"]["metrics"]["f1"],
            "validation_roc_auc": result["validation"]["metrics"]["roc_auc"],
            "llm": {m: result["scoring"]["metrics"][m] for m in METRICS["binary"]},
            "cnn": {m: whole["cnn"]["metrics"][m] for m in METRICS["binary"]},
            "mcnemar": whole["mcnemar"],
            "n_test": result["scoring"]["n_records"], "n_test_af": result["scoring"]["n_positive"]}


def trained_on(layout: RunLayout) -> dict:
    """The hosts the run's encoder and LLM were trained on; None for models trained before hosts were recorded."""
    return {stage: json.loads((folder / HOST_NAME).read_text()) if (folder / HOST_NAME).is_file() else None
            for stage, folder in (("encoder", layout.encoder), ("llm", layout.llm))}


def train_variant(name: str, layout: RunLayout, data: Path, preset: str, seed: int, task: str) -> dict:
    """The seed's run with only the LLM changed; written to RUN/variants/NAME."""
    model_changes, training_changes = VARIANTS[name]
    llm_preset = RUN_PRESETS[preset][1]
    model_config = dataclasses.replace(LLM_PRESETS[llm_preset][0], **model_changes)
    train_config = dataclasses.replace(llm_training_preset(llm_preset, task), seed=seed, **training_changes)
    folder = layout.root / "variants" / name
    metrics = folder / "eval" / "metrics.json"
    if not metrics.exists():
        dataset = load_cinc_folder(data, task=task, progress=False)
        split = Split.load(layout.split)
        if not (folder / "final" / CONFIG_NAME).exists():
            train_llm(dataset, split, layout.encoder, folder, model_config, train_config, layout.cache)
        evaluate_run_llm(folder / "final", dataset, split, folder / "eval", layout.cache, layout.encoder_eval,
                         SCORE_ONLY, seed)
    return llm_figures(json.loads(metrics.read_text()))


def summarise(per_seed: dict[str, dict], task: str) -> dict:
    seeds = sorted(per_seed)
    out = {VALIDATION[task]: mean_sd([per_seed[s][VALIDATION[task]] for s in seeds])}
    for metric in METRICS[task]:
        llm = [per_seed[s]["llm"][metric] for s in seeds]
        cnn = [per_seed[s]["cnn"][metric] for s in seeds]
        out[metric] = {"llm": mean_sd(llm), "cnn": mean_sd(cnn),
                       "llm_minus_cnn": paired_over_runs([a - b for a, b in zip(llm, cnn)])}
    return out


def format_table(name: str, per_seed: dict[str, dict], summary: dict, task: str) -> str:
    metrics = METRICS[task]
    lines = [f"{name}: test, {len(per_seed)} runs (LLM / CNN)",
             f"{'run':>8} " + " ".join(f"{m:>21}" for m in metrics) + f" {'McNemar CNN/LLM only':>22}"]
    for seed, f in sorted(per_seed.items()):
        mc = f["mcnemar"]
        lines.append(f"{seed:>8} " + " ".join(f"{f['llm'][m]:>10.4f}/{f['cnn'][m]:<10.4f}" for m in metrics)
                     + f" {mc['only_a_right']:>11}/{mc['only_b_right']}")
    for metric in metrics:
        s = summary[metric]
        d = s["llm_minus_cnn"]
        interval = "" if d["interval_95"] is None else f" (95% CI {d['interval_95'][0]:+.4f} to " \
                                                       f"{d['interval_95'][1]:+.4f})"
        lines.append(f"{metric:>16}: LLM {s['llm']['mean']:.4f} +- {s['llm']['sd']:.4f}, CNN {s['cnn']['mean']:.4f} "
                     f"+- {s['cnn']['sd']:.4f}; LLM - CNN {d['mean']:+.4f}{interval}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs, one per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 7])
    parser.add_argument("--preset", default="cpu", choices=sorted(RUN_PRESETS))
    parser.add_argument("--task", default="binary", choices=sorted(METRICS))
    parser.add_argument("--variant", action="append", default=[], choices=sorted(VARIANTS))
    parser.add_argument("--folds", type=int, default=None, help="K folds of the first seed instead of seeds")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="take runs already in the results file from it")
    args = parser.parse_args()
    task = args.task
    results = args.results or Path(__file__).parent / "results" / \
        f"seed_comparison_{'four_' if task == 'four' else ''}{args.preset}.json"

    started = time.perf_counter()
    command = "python " + " ".join(sys.argv)
    systems: dict[str, dict[str, dict]] = {"preset": {}, **{v: {} for v in args.variant}}
    earlier = json.loads(results.read_text()) if args.reuse and results.exists() else None
    if earlier is not None and earlier["task"] != task:
        parser.error(f"{results} holds the {earlier['task']} task, not {task}")
    measured_by: dict[str, str] = {}
    hosts: dict[str, dict] = {}
    runs = [(f"seed_{s}", s, None) for s in args.seeds] if args.folds is None else \
        [(f"fold_{k}", args.seeds[0], k) for k in range(args.folds)]
    # Every run before any variant: the comparison with the CNN is complete first.
    for name, seed, fold in runs:
        if earlier is not None and name in earlier["per_run"]["preset"]:
            systems["preset"][name] = earlier["per_run"]["preset"][name]
            measured_by[name] = earlier.get("measured_by", {}).get(name, earlier["command"])
            hosts[name] = earlier.get("trained_on", {}).get(name)
            continue
        measured_by[name] = command
        layout = RunLayout(args.out / name)
        if fold is not None and not layout.split.exists():  # `run` reuses a split it finds
            labels = load_cinc_folder(args.data, task=task, progress=False).labels
            make_fold_split(labels, task, args.folds, fold, seed).save(layout.split)
        result = run(args.data, layout.root, args.preset, seed, evaluation=SCORE_ONLY, task=task)
        systems["preset"][name] = llm_figures(result["llm"])
        hosts[name] = trained_on(layout)
    for variant in args.variant:
        for name, seed, _ in runs:
            systems[variant][name] = train_variant(variant, RunLayout(args.out / name), args.data, args.preset, seed,
                                                   task)
    summaries = {name: summarise(per_seed, task) for name, per_seed in systems.items()}

    print(f"{VALIDATION[task].replace('_', ' ')} (the only figure to choose a variant on):")
    for name, s in summaries.items():
        print(f"  {name:>12}: {s[VALIDATION[task]]['mean']:.4f} +- {s[VALIDATION[task]]['sd']:.4f}")
    for name in systems:
        print("\n" + format_table(name, systems[name], summaries[name], task))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "command": command, "measured_by": measured_by, "trained_on": hosts, "machine": describe_host(),
        "task": task, "evaluation": "scoring only, thresholds (four classes: class offsets) chosen on validation; CNN "
                                    "averaged over the record's windows",
        "variants": {name: VARIANTS[name] for name in args.variant},
        "per_run": systems, "summary": summaries, "wall_seconds": round(time.perf_counter() - started)},
        indent=2))
    print(f"\nwrote {results}")


if __name__ == "__main__":
    main()
