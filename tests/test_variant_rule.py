"""The validation rule of benchmarks/llm_variant_seeds.py, which decides whether a four-class LLM variant replaces the
preset (e.g. the fresh-seeds cross-fit rule), on evaluation folders written in `ecgllm llm evaluate`'s format."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ecgllm.evaluation.four_class import CLASSES

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "llm_variant_seeds.py"


def write_evaluation(folder: Path, records: list[str], labels: np.ndarray, p_true: np.ndarray,
                     challenge: float, f1_a: float) -> Path:
    """An evaluation folder whose four-sentence softmax gives each record's true class `p_true`."""
    folder.mkdir(parents=True)
    metrics = {"task": "four", "validation": {"metrics": {"challenge_score": challenge, "f1_A": f1_a}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    with (folder / "validation_predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["record", "label", *(f"log_p_{c}" for c in CLASSES), "decision"])
        for record, label, p in zip(records, labels, p_true):
            probabilities = np.full(len(CLASSES), (1 - p) / (len(CLASSES) - 1))
            probabilities[label] = p
            writer.writerow([record, label, *(f"{v:.6f}" for v in np.log(probabilities)), label])
    return folder


def run_rule(seeds: dict[str, tuple], *extra: str) -> subprocess.CompletedProcess:
    """The script's log-loss rule over `seeds` ({seed: (preset_folder, variant_folder)})."""
    pairs = [arg for seed, (p, v) in seeds.items() for arg in ("--pair", seed, str(p), str(v))]
    return subprocess.run([sys.executable, str(SCRIPT), "--rule", "log-loss", "--guard", "0.01", *pairs, *extra],
                          capture_output=True, text=True)


def decide(tmp_path: Path, seeds: dict[str, tuple]) -> dict:
    results = tmp_path / "rule.json"
    completed = run_rule(seeds, "--results", str(results))
    assert completed.returncode == 0, completed.stderr
    return json.loads(results.read_text())["validation"]


def seed_pair(tmp_path: Path, seed: str, variant_gain: float, variant_challenge: float, n: int = 300):
    rng = np.random.default_rng(int(seed))
    records = [f"A{seed}{i:04d}" for i in range(n)]
    labels = rng.integers(0, len(CLASSES), n)
    p_preset = rng.uniform(0.3, 0.8, n)
    p_variant = rng.uniform(0.3, 0.8, n) + variant_gain  # drawn apart from the preset's: differences vary by record
    return (write_evaluation(tmp_path / seed / "preset", records, labels, p_preset, 0.84, 0.85),
            write_evaluation(tmp_path / seed / "variant", records, labels, p_variant, variant_challenge, 0.85))


def test_a_variant_surer_of_the_true_classes_is_adopted(tmp_path):
    rule = decide(tmp_path, {s: seed_pair(tmp_path, s, 0.1, 0.84) for s in ("6", "8", "9")})
    assert rule["log_loss"]["n_records"] == 900
    assert rule["log_loss"]["interval_95"][1] < 0
    assert rule["figures_within_guard"] and rule["variant_adopted"]


def test_the_guard_refuses_a_variant_whose_validation_figures_fall_behind(tmp_path):
    rule = decide(tmp_path, {s: seed_pair(tmp_path, s, 0.1, 0.82) for s in ("6", "8", "9")})
    assert rule["log_loss"]["interval_95"][1] < 0
    assert not rule["figures_within_guard"] and not rule["variant_adopted"]


def test_a_variant_no_surer_than_the_preset_is_not_adopted(tmp_path):
    rule = decide(tmp_path, {s: seed_pair(tmp_path, s, 0.0, 0.84) for s in ("6", "8", "9")})
    low, high = rule["log_loss"]["interval_95"]
    assert low < 0 < high
    assert rule["figures_within_guard"] and not rule["variant_adopted"]


def test_folders_that_scored_different_records_are_refused(tmp_path):
    preset, _ = seed_pair(tmp_path, "6", 0.1, 0.84, n=20)
    _, other_variant = seed_pair(tmp_path / "other", "7", 0.1, 0.84, n=20)
    completed = run_rule({"6": (preset, other_variant)})
    assert completed.returncode != 0 and "different validation records" in completed.stderr
