"""How well the four-class offsets chosen on validation carry to records they were not chosen on, measured inside
validation alone (`offsets_on_halves`): each run's validation records are cut in two halves (stratified by class)
many times; the offsets are chosen on one half (`choose_offsets`, as evaluation does on all of validation) and scored
on the other, against no offsets at all. Reads the validation_predictions.csv that `ecgllm llm evaluate` writes beside
its metrics, or the MS-CNN's predictions.csv from `ecgllm encoder evaluate --split-name val` (its whole-record
probabilities); reads no test figure and trains nothing.

    python benchmarks/offset_choice_stability.py \
        --predictions runs/four75_seeds/seed_*/llm/eval/validation_predictions.csv
    python benchmarks/offset_choice_stability.py --results benchmarks/results/offset_choice_stability_cnn.json \
        --predictions runs/four75_seeds/seed_*/encoder/eval_val/predictions.csv

Prints, per run and over all runs, the held-out half's challenge score and AF-vs-rest F1 with the chosen offsets and
with none, and how far the chosen AF offset moves between halves; writes
benchmarks/results/offset_choice_stability.json.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ecgllm.evaluation.four_class import AF, CLASSES, log_probabilities, offsets_on_halves


def held_out_scores(labels: np.ndarray, scores: np.ndarray, repeats: int, seed: int) -> dict:
    rows = [{"af_offset": row["offsets"][AF],
             # f1_A, the F1 of class A against the rest, is the AF-vs-rest F1
             **{f"{metric}_{name}": row[name][key] for name in ("chosen", "none")
                for metric, key in (("challenge", "challenge_score"), ("af_f1", "f1_A"))}}
            for row in offsets_on_halves(labels, scores, repeats, seed)]
    table = pd.DataFrame(rows)
    summary = {column: {"mean": float(table[column].mean()), "sd": float(table[column].std())} for column in table}
    for metric in ("challenge", "af_f1"):
        gain = table[f"{metric}_chosen"] - table[f"{metric}_none"]
        summary[f"{metric}_chosen_minus_none"] = {"mean": float(gain.mean()), "sd": float(gain.std()),
                                                  "share_better": float((gain > 0).mean()),
                                                  "share_worse": float((gain < 0).mean())}
    return summary


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Labels and per-class log P of a predictions file: the ECG-LLM's log_p_<class> columns, else the MS-CNN's
    whole-record probabilities p_<class>_whole."""
    table = pd.read_csv(path)
    llm_columns = [f"log_p_{c}" for c in CLASSES]
    cnn_columns = [f"p_{c}_whole" for c in CLASSES]
    if "label" in table.columns:
        if set(llm_columns) <= set(table.columns):
            return table["label"].to_numpy(), table[llm_columns].to_numpy(float)
        if set(cnn_columns) <= set(table.columns):
            return table["label"].to_numpy(), log_probabilities(table[cnn_columns].to_numpy(float))
    sys.exit(f"{path}: expected a label column and log_p_<class> (ECG-LLM) or p_<class>_whole (MS-CNN) columns for "
             f"the classes {', '.join(CLASSES)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=Path, nargs="+", required=True,
                        help="validation predictions of four-class ECG-LLMs or MS-CNNs (see above)")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path,
                        default=Path(__file__).parent / "results" / "offset_choice_stability.json")
    args = parser.parse_args()

    per_run = {}
    for path in args.predictions:
        labels, scores = read_scores(path)
        per_run[str(path)] = summary = held_out_scores(labels, scores, args.repeats, args.seed)
        print(f"{path}: {len(labels)} records")
        for metric in ("challenge", "af_f1"):
            gain = summary[f"{metric}_chosen_minus_none"]
            print(f"  {metric}: chosen {summary[f'{metric}_chosen']['mean']:.4f}, none "
                  f"{summary[f'{metric}_none']['mean']:.4f}; chosen - none {gain['mean']:+.4f} "
                  f"(SD {gain['sd']:.4f}; better in {gain['share_better']:.0%}, worse in {gain['share_worse']:.0%})")
        af_offset = summary["af_offset"]
        print(f"  AF offset chosen on a half: {af_offset['mean']:+.2f} (SD {af_offset['sd']:.2f})")
    over_runs = {key: float(np.mean([run[key]["mean"] for run in per_run.values()]))
                 for key in ("challenge_chosen_minus_none", "af_f1_chosen_minus_none")}
    print("mean over runs, chosen - none:", {k: round(v, 4) for k, v in over_runs.items()})
    args.results.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "repeats": args.repeats,
                                        "seed": args.seed, "per_run": per_run, "over_runs": over_runs}, indent=2))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
