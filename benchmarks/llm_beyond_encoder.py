"""Does the ECG-LLM carry anything its own encoder lacks? Validation only.

For each finished run: the LLM's validation scores (log-odds of AF, or four-class log-probabilities of the decision
sentences) plus lam times its MS-CNN's (whole record), for a range of lam, each decided at the threshold (or class
offsets) that is best on those same validation records. lam = 0 is the LLM alone, "cnn" the encoder alone. Every row
is fitted on the records it is scored on, so all are equally optimistic; read them against each other. If no lam
beats the CNN alone, the LLM adds nothing the CNN's decision lacks. The test split is never read.

    python benchmarks/llm_beyond_encoder.py --data ../shared/data/cinc2017/training2017 \\
        --runs runs/seeds/seed_42 runs/seeds/seed_1 runs/seeds/seed_7 --name binary

Prints a table and writes benchmarks/results/llm_beyond_encoder_<name>.json.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.special import logit
from sklearn.metrics import f1_score

from ecgllm.data.dataset import CinCDataset, load_cinc_folder
from ecgllm.data.split import Split
from ecgllm.encoder import load_encoder
from ecgllm.encoder.predict import predict_records
from ecgllm.evaluation.four_class import challenge_score, choose_offsets, decide, log_probabilities
from ecgllm.evaluation.metrics import choose_threshold
from ecgllm.runs.layout import RunLayout

LAMBDAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def best_validation_score(task: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """F1 at the best threshold (binary) or the challenge score at the best offsets (four classes)."""
    if task == "binary":
        return float(f1_score(labels, scores >= choose_threshold(labels, scores)))
    return challenge_score(labels, decide(scores, choose_offsets(labels, scores)))


def validation_scores(layout: RunLayout, task: str, dataset: CinCDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """labels [n], LLM scores and CNN scores ([n] log-odds, or [n, 4] log-probabilities) on the validation split."""
    with (layout.llm_eval / "validation_predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    ids = [row["record"] for row in rows]
    encoder = load_encoder(layout.encoder)
    cnn = predict_records(encoder, dataset.signals(ids, encoder.config.preprocess.fs), "whole")
    labels = np.array([int(row["label"]) for row in rows])
    if task == "binary":
        # The CSV keeps 6 decimals: clip so that a rounded 0 or 1 stays finite.
        p_llm = np.clip([float(row["p_af"]) for row in rows], 1e-6, 1 - 1e-6)
        return labels, logit(p_llm), logit(np.clip(cnn, 1e-6, 1 - 1e-6))
    llm = np.array([[float(row[f"log_p_{c}"]) for c in "NAO~"] for row in rows])
    return labels, llm, log_probabilities(cnn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="finished run folders of one task")
    parser.add_argument("--name", required=True, help="results file suffix")
    args = parser.parse_args()

    per_run, datasets = {}, {}
    for root in args.runs:
        layout = RunLayout(root)
        task = Split.load(layout.split).task
        if task not in datasets:
            datasets[task] = load_cinc_folder(args.data, task=task, progress=False)
        labels, llm, cnn = validation_scores(layout, task, datasets[task])
        row = {f"lam_{lam:g}": best_validation_score(task, labels, llm + lam * cnn) for lam in LAMBDAS}
        row["cnn"] = best_validation_score(task, labels, cnn)
        per_run[str(root)] = {"task": task, "n_validation": len(labels), **row}
        print(f"{root} ({task}, {len(labels)} validation records): "
              + ", ".join(f"{k} {v:.4f}" for k, v in row.items()))
    columns = [f"lam_{lam:g}" for lam in LAMBDAS] + ["cnn"]
    mean = {c: float(np.mean([r[c] for r in per_run.values()])) for c in columns}
    print("mean: " + ", ".join(f"{c} {v:.4f}" for c, v in mean.items()))
    out = Path(__file__).parent / "results" / f"llm_beyond_encoder_{args.name}.json"
    out.write_text(json.dumps({"command": "python " + " ".join(sys.argv),
                               "what": "validation only: LLM + lam * CNN scores, each row's decision rule fitted on "
                                       "the records it is scored on (F1 for binary, challenge score for four classes)",
                               "per_run": per_run, "mean": mean}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
