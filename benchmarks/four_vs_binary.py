"""The four-class ECG-LLM against the binary one of the same seed, on the test records both were tested on, and on the
records the binary task leaves out:
- N vs A on the binary test records (which sit unchanged inside the four-class test split of the same seed): AF
  decisions of each (the four-class model's "AF" outcome against its three others), F1 / sensitivity / specificity /
  ROC AUC, the paired bootstrap of the F1 difference and McNemar's test;
- the share of "other rhythm" (O) and "too noisy" (~) test records called AF by each system: the four-class ECG-LLM
  and MS-CNN from their evaluations, the binary ECG-LLM and MS-CNN by scoring those records here at their validated
  thresholds.

    python benchmarks/four_vs_binary.py --four runs/four --binary runs/cpu --data ../shared/data/cinc2017/training2017

Prints the figures and writes them to benchmarks/results/four_vs_binary.json.
"""

import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.split import Split
from ecgllm.encoder import load_encoder
from ecgllm.encoder.predict import predict_records
from ecgllm.evaluation.compare import mcnemar
from ecgllm.evaluation.four_class import AF, af_log_odds, decide, log_probabilities
from ecgllm.evaluation.metrics import bootstrap, decision_metrics
from ecgllm.llm.calibration import decision_log_odds
from ecgllm.llm.data import prepare_examples
from ecgllm.llm.evaluate import predict
from ecgllm.runs.layout import RunLayout, load_model


def read_rows(path: Path) -> dict[str, dict]:
    with path.open(newline="") as handle:
        return {row["record"]: row for row in csv.DictReader(handle)}


def paired_f1(labels, a, b, n_resamples: int = 1000) -> dict:
    def difference(y, x, z):
        return {"f1_b_minus_a": decision_metrics(y, z, z)["f1"] - decision_metrics(y, x, x)["f1"]}

    return {"f1_b_minus_a": difference(labels, a, b)["f1_b_minus_a"],
            "interval_95": bootstrap(difference, (labels, a, b), n_resamples)["f1_b_minus_a"],
            "mcnemar": mcnemar(labels, a, b)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--four", type=Path, required=True, help="a finished four-class run folder")
    parser.add_argument("--binary", type=Path, required=True, help="a finished binary run folder of the same seed")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "four_vs_binary.json")
    args = parser.parse_args()

    four, binary = RunLayout(args.four), RunLayout(args.binary)
    four_split, binary_split = Split.load(four.split), Split.load(binary.split)
    if not set(binary_split.test) <= set(four_split.test):
        raise SystemExit("the binary test records are not all in the four-class test split: not runs of one seed")
    four_rows = read_rows(four.llm_eval / "predictions.csv")
    binary_rows = read_rows(binary.llm_eval / "predictions.csv")
    ids = sorted(binary_rows)
    labels = np.array([int(binary_rows[i]["label"]) for i in ids])
    log_p = np.array([[float(four_rows[i][f"log_p_{c}"]) for c in "NAO~"] for i in ids])
    four_af = np.array([int(four_rows[i]["decision"]) == AF for i in ids]).astype(int)
    binary_af = np.array([int(binary_rows[i]["decision"]) for i in ids])
    binary_scores = np.array([float(binary_rows[i]["p_af"]) for i in ids])  # in every version's predictions.csv
    results = {"four_run": str(args.four), "binary_run": str(args.binary), "seed": four_split.seed,
               "n_vs_a": {"n_records": len(ids), "n_af": int(labels.sum()),
                          "binary_llm": decision_metrics(labels, binary_af, binary_scores),
                          "four_class_llm": decision_metrics(labels, four_af, af_log_odds(log_p)),
                          "four_minus_binary": paired_f1(labels, binary_af, four_af)}}

    # Records the binary task leaves out: O and ~ of the four-class test split.
    dataset = load_cinc_folder(args.data, task="four", progress=False)
    left_out = {c: [i for i in four_split.test if four_split.labels[i] == k] for k, c in ((2, "O"), (3, "~"))}
    called = {"four_class_llm": {c: float(np.mean([int(four_rows[i]["decision"]) == AF for i in ids_c]))
                                 for c, ids_c in left_out.items()}}
    encoder_rows = read_rows(four.encoder_eval / "predictions.csv")
    encoder_offsets = json.loads((four.encoder_eval / "metrics.json").read_text())["modes"]["whole"]["offsets"]
    called["four_class_cnn_whole"] = {
        c: float(np.mean(decide(log_probabilities([[float(encoder_rows[i][f"p_{k}_whole"]) for k in "NAO~"]
                                                   for i in ids_c]), encoder_offsets) == AF))
        for c, ids_c in left_out.items()}
    encoder = load_encoder(binary.encoder)
    model = load_model(binary.llm_final, "cpu")
    threshold = decision_log_odds(model.calibration)
    called["binary_cnn_whole"], called["binary_llm"] = {}, {}
    with tempfile.TemporaryDirectory() as cache, torch.no_grad():
        for c, ids_c in left_out.items():
            p_af = predict_records(encoder, dataset.signals(ids_c, encoder.config.preprocess.fs), "whole")
            called["binary_cnn_whole"][c] = float(np.mean(p_af >= encoder.config.thresholds["whole"]))
            examples = prepare_examples(model, dataset, ids_c, Path(cache), progress=False)
            scores, _ = predict(model, examples, args.batch_size, progress=False)
            called["binary_llm"][c] = float(np.mean(scores >= threshold))
    results["called_af"] = {"n_records": {c: len(v) for c, v in left_out.items()}, **called}

    nva = results["n_vs_a"]
    print(f"N vs A on the {nva['n_records']} binary test records ({nva['n_af']} AF): binary LLM F1 "
          f"{nva['binary_llm']['f1']:.4f}, four-class LLM F1 {nva['four_class_llm']['f1']:.4f}; difference "
          f"{nva['four_minus_binary']['f1_b_minus_a']:+.4f} (95% CI {nva['four_minus_binary']['interval_95'][0]:+.4f} "
          f"to {nva['four_minus_binary']['interval_95'][1]:+.4f}), McNemar p "
          f"{nva['four_minus_binary']['mcnemar']['p_value']:.4f}")
    for system, shares in called.items():
        print(f"called AF by {system}: " + ", ".join(f"{c} {v:.1%} of {len(left_out[c])}" for c, v in shares.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
