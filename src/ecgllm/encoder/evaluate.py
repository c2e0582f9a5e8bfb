"""Evaluating a trained MS-CNN on a split, in both modes, with the thresholds (four-class: class offsets) it chose on
validation."""

import csv
import json
from pathlib import Path

import numpy as np

from ecgllm.configuration_utils import check_range
from ecgllm.data.dataset import CinCDataset
from ecgllm.data.labels import task_labels
from ecgllm.data.preprocess import MODES
from ecgllm.data.split import Split
from ecgllm.encoder.modeling_mscnn import Encoder
from ecgllm.encoder.predict import predict_records
from ecgllm.evaluation.four_class import evaluate_four_class, format_four_class, log_probabilities
from ecgllm.evaluation.metrics import evaluate_predictions, format_evaluation

MODE_TITLES = {"center": "centre crop (one window, the original protocol)", "whole": "whole record (sliding windows)"}


def evaluate_encoder(model: Encoder, dataset: CinCDataset, split: Split, out_dir: str | Path | None = None,
                     split_name: str = "test", n_resamples: int = 1000, progress: bool = True,
                     max_seconds: float | None = None) -> dict:
    """Metrics with 95% bootstrap intervals for each mode; writes metrics.json, metrics.txt, predictions.csv.
    `max_seconds` scores only each record's first seconds, as from a device that records that long."""
    check_range("max_seconds", max_seconds, 1.0)
    split.require_task(model.config.task, "this MS-CNN")
    split.check_against(dataset.labels)
    ids = split.ids(split_name)
    labels = np.array([dataset.labels[i] for i in ids])
    fs = model.config.preprocess.fs
    signals = dataset.signals(ids, fs)
    if max_seconds is not None:
        signals = [signal[:int(max_seconds * fs)] for signal in signals]
    probabilities = {mode: predict_records(model, signals, mode, progress=progress) for mode in MODES}
    result = {"system": f"MS-CNN ({model.config.preset})", "split": split_name, "task": model.config.task,
              "max_seconds": max_seconds,
              "modes": {mode: _evaluate_mode(model, mode, labels, probabilities[mode], n_resamples) for mode in MODES}}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
        (out_dir / "metrics.txt").write_text(format_encoder_result(result) + "\n")
        with (out_dir / "predictions.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            if model.config.task == "binary":
                writer.writerow(["record", "label", *(f"p_af_{mode}" for mode in MODES)])
                for row in zip(ids, labels, *(probabilities[m] for m in MODES)):
                    writer.writerow([row[0], int(row[1]), *(f"{p:.6f}" for p in row[2:])])
            else:
                classes = task_labels(model.config.task)
                writer.writerow(["record", "label", *(f"p_{c}_{mode}" for mode in MODES for c in classes)])
                for index, record in enumerate(ids):
                    writer.writerow([record, int(labels[index]),
                                     *(f"{p:.6f}" for mode in MODES for p in probabilities[mode][index])])
    return result


def _evaluate_mode(model: Encoder, mode: str, labels: np.ndarray, probabilities: np.ndarray, n_resamples: int) -> dict:
    if model.config.task == "binary":
        return evaluate_predictions(labels, probabilities, model.config.thresholds[mode], n_resamples)
    offsets = model.config.class_offsets.get(mode, [0.0] * probabilities.shape[1])
    return {**evaluate_four_class(labels, log_probabilities(probabilities), offsets, n_resamples),
            "offset_check": model.config.class_offset_checks.get(mode)}


def format_encoder_result(result: dict) -> str:
    cut = f", each record's first {result['max_seconds']:g} s" if result.get("max_seconds") else ""
    blocks = [f"{result['system']} on the {result['split']} split{cut} (thresholds chosen on validation)"]
    show = format_evaluation if result.get("task", "binary") == "binary" else format_four_class
    blocks += [show(MODE_TITLES[mode], result["modes"][mode]) for mode in MODES]
    return "\n\n".join(blocks)
