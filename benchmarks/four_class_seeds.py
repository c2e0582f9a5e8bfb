"""The four-class task over several seeds: each seed is a whole `ecgllm run --task four` (its own split, encoder and
LLM, all from that seed), evaluated by scoring only; the four-class ECG-LLM against the four-class MS-CNN (whole
record) on the same test records, each at the class offsets it chose on validation.

    python benchmarks/four_class_seeds.py --data ../shared/data/cinc2017/training2017 --out runs/four_seeds \\
        --seeds 42 1 7

Prints the validation challenge score first, then per seed and mean +- SD: the challenge score (mean F1 of N, A, O),
AF-vs-rest F1 and ROC AUC over all four classes, N-vs-A F1 on the binary split's test records, and the share of O
and ~ records called AF; with the paired difference LLM - CNN and a t interval over seeds. Writes
benchmarks/results/four_class_seeds_<preset>.json. A finished seed is read back, not retrained.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from ecgllm.evaluation.compare import mean_sd, paired_over_runs
from ecgllm.runs.job import RUN_PRESETS, run

FIGURES = {"challenge_score": ("four_class", "challenge_score"), "af_f1": ("af_vs_rest", "f1"),
           "af_roc_auc": ("af_vs_rest", "roc_auc"), "n_vs_a_f1": ("n_vs_a", "f1")}


def figures(result: dict) -> dict:
    """One system's figures from its four-class evaluation block."""
    return {**{name: result[block]["metrics"][metric] for name, (block, metric) in FIGURES.items()},
            "o_called_af": result["called_af"]["O"], "noisy_called_af": result["called_af"]["~"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs, one per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 7])
    parser.add_argument("--preset", default="cpu", choices=sorted(RUN_PRESETS))
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    results = args.results or Path(__file__).parent / "results" / f"four_class_seeds_{args.preset}.json"

    started = time.perf_counter()
    per_seed = {}
    for seed in args.seeds:
        llm = run(args.data, args.out / f"seed_{seed}", args.preset, seed, evaluation={"generate": False},
                  task="four")["llm"]
        per_seed[seed] = {"validation_challenge_score": llm["validation"]["metrics"]["challenge_score"],
                          "llm": figures(llm["scoring"]), "cnn": figures(llm["comparison_with_task1"]["whole"]["cnn"])}
    names = [*FIGURES, "o_called_af", "noisy_called_af"]
    summary = {"validation_challenge_score": mean_sd([s["validation_challenge_score"] for s in per_seed.values()])}
    for name in names:
        llm, cnn = ([s[system][name] for s in per_seed.values()] for system in ("llm", "cnn"))
        summary[name] = {"llm": mean_sd(llm), "cnn": mean_sd(cnn),
                         "llm_minus_cnn": paired_over_runs([a - b for a, b in zip(llm, cnn)])}

    v = summary["validation_challenge_score"]
    print(f"validation challenge score: {v['mean']:.4f} +- {v['sd']:.4f}")
    print(f"{'seed':>6} " + " ".join(f"{n + ' LLM/CNN':>26}" for n in names))
    for seed, s in per_seed.items():
        print(f"{seed:>6} " + " ".join(f"{s['llm'][n]:>12.4f} / {s['cnn'][n]:<11.4f}" for n in names))
    for name in names:
        s, d = summary[name], summary[name]["llm_minus_cnn"]
        interval = "" if d["interval_95"] is None else \
            f" (95% CI {d['interval_95'][0]:+.4f} to {d['interval_95'][1]:+.4f})"
        print(f"{name:>18}: LLM {s['llm']['mean']:.4f} +- {s['llm']['sd']:.4f}, CNN {s['cnn']['mean']:.4f} +- "
              f"{s['cnn']['sd']:.4f}; LLM - CNN {d['mean']:+.4f}{interval}")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "command": "python " + " ".join(sys.argv), "machine": f"{platform.node()}, {platform.processor()}",
        "evaluation": "scoring only; class offsets chosen on validation; CNN averaged over the record's windows",
        "per_seed": per_seed, "summary": summary, "wall_seconds": round(time.perf_counter() - started)}, indent=2))
    print(f"\nwrote {results}")


if __name__ == "__main__":
    main()
