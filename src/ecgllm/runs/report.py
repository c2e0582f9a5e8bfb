"""`ecgllm report RUN`: one self-contained HTML file (pictures inlined) on how a trained run performs.

It reads only what the run's stages wrote — metrics.json, predictions.csv, history.csv, train_log.csv — and, for the
example strips, the test records from the data folder the run was trained on.
"""

import base64
import csv
import html
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ecgllm import __version__
from ecgllm.errors import CheckpointError
from ecgllm.evaluation.metrics import METRIC_NAMES
from ecgllm.llm.calibration import af_probability
from ecgllm.runs.layout import RunLayout

SYSTEMS_TASK1 = {"center": "Task 1 MS-CNN, centre 8 s", "whole": "Task 1 MS-CNN, whole record"}


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise CheckpointError(f"{path.parent}: no {path.name}; run the {stage} stage first")
    return path


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _llm_threshold_p(metrics: dict) -> float:
    """The LLM's threshold as P(AF), for pictures and tables; written as log-odds since the log-odds decisions (a run
    of an earlier version wrote P(AF))."""
    threshold = metrics["scoring"]["threshold"]
    return float(af_probability(threshold)) if metrics.get("score") == "log-odds" else threshold


def _metric_row(name: str, result: dict, threshold: float) -> str:
    cells = "".join(f"<td>{result['metrics'][m]:.3f}<br><small>{result['intervals_95'][m][0]:.3f}–"
                    f"{result['intervals_95'][m][1]:.3f}</small></td>" for m in METRIC_NAMES)
    cm = result["confusion_matrix"]
    return (f"<tr><th>{html.escape(name)}</th><td>{threshold:.3g}</td>{cells}"
            f"<td>{cm['tp']}/{cm['fn']}/{cm['fp']}/{cm['tn']}</td></tr>")


def _comparison_rows(comparison: dict) -> str:
    rows = []
    for mode, c in comparison.items():
        f1, auc, mc = c["f1_difference_llm_minus_cnn"], c["auc_difference_llm_minus_cnn"], c["mcnemar"]
        rows.append(
            f"<tr><th>{html.escape(SYSTEMS_TASK1.get(mode, mode))}</th>"
            f"<td>{f1['difference']:+.3f} ({f1['interval_95'][0]:+.3f} to {f1['interval_95'][1]:+.3f})</td>"
            f"<td>{auc['difference']:+.4f} ({auc['interval_95'][0]:+.4f} to {auc['interval_95'][1]:+.4f})</td>"
            f"<td>{mc['only_a_right']} / {mc['only_b_right']}</td><td>{mc['p_value']:.4f}</td></tr>")
    return "".join(rows)


def choose_examples(rows: list[dict], per_kind: int = 2) -> list[tuple[str, dict]]:
    """Correct and wrong test records: true AF, true normal, false AF, missed AF (the most confident of each)."""
    kinds = {"correct AF": (1, 1), "correct normal": (0, 0), "false alarm": (0, 1), "missed AF": (1, 0)}
    chosen = []
    for kind, (label, decision) in kinds.items():
        matching = [r for r in rows if int(r["label"]) == label and int(r["decision"]) == decision]
        matching.sort(key=lambda r: abs(float(r["p_af"]) - 0.5), reverse=True)
        chosen += [(kind, r) for r in matching[:per_kind]]
    return chosen


def _example_blocks(examples: list[tuple[str, dict]], data_dir: Path | None, figures: Path) -> str:
    from ecgllm.data.records import load_cinc_record
    from ecgllm.errors import RecordError
    from ecgllm.plots.ecg import plot_ecg_strip
    from ecgllm.rhythm import detect_r_peaks

    blocks = []
    for kind, row in examples:
        record = row["record"]
        picture = "<p><em>strip not shown: the data folder is not available</em></p>"
        if data_dir is not None:
            try:
                ecg = load_cinc_record(data_dir / f"{record}.mat")
                peaks = detect_r_peaks(ecg.signal, ecg.fs) / ecg.fs
                path = plot_ecg_strip(ecg.signal, ecg.fs, figures / f"example_{record}.png", peaks,
                                      title=f"{record} ({kind})")
                picture = _image(path, f"ECG strip of {record}")
            except RecordError as error:
                picture = f"<p><em>strip not shown: {html.escape(str(error))}</em></p>"
        truth = "AF" if int(row["label"]) else "not AF"
        blocks.append(f'<div class="example"><h3>{html.escape(record)} — {kind} (label {truth}, P(AF) '
                      f'{float(row["p_af"]):.3f})</h3><blockquote>{html.escape(row["answer"] or "(not generated)")}'
                      f"</blockquote>{picture}</div>")
    return "".join(blocks)


def write_report(run_dir: str | Path, out: str | Path | None = None, data_dir: str | Path | None = None,
                 llm_name: str = "llm", examples_per_kind: int = 2) -> Path:
    """Write RUN/report.html (or `out`) and its pictures in RUN/report/; returns the HTML path."""
    from ecgllm.plots.run import plot_calibration, plot_confusion_matrices, plot_roc_pr, plot_training_curves

    layout = RunLayout(Path(run_dir), llm_name)
    encoder_metrics = json.loads(_require(layout.encoder_eval / "metrics.json", "encoder evaluation").read_text())
    llm_metrics = json.loads(_require(layout.llm_eval / "metrics.json", "LLM evaluation").read_text())
    llm_rows = _read_csv(_require(layout.llm_eval / "predictions.csv", "LLM evaluation"))
    encoder_rows = {r["record"]: r for r in _read_csv(layout.encoder_eval / "predictions.csv")}
    if data_dir is None and layout.manifest.exists():
        data_dir = json.loads(layout.manifest.read_text()).get("data")
    data_dir = Path(data_dir) if data_dir is not None and Path(data_dir).exists() else None

    ids = [r["record"] for r in llm_rows]
    labels = np.array([int(r["label"]) for r in llm_rows])
    systems = {name: (labels, np.array([float(encoder_rows[i][f"p_af_{mode}"]) for i in ids]),
                      encoder_metrics["modes"][mode]["threshold"])
               for mode, name in SYSTEMS_TASK1.items() if mode in encoder_metrics["modes"]}
    systems["Task 2 ECG-LLM"] = (labels, np.array([float(r["p_af"]) for r in llm_rows]), _llm_threshold_p(llm_metrics))

    figures = layout.root / "report"
    figures.mkdir(parents=True, exist_ok=True)
    history = _read_csv(layout.encoder / "history.csv") if (layout.encoder / "history.csv").exists() else []
    train_log = _read_csv(layout.llm / "train_log.csv") if (layout.llm / "train_log.csv").exists() else []
    pictures = {
        "ROC and precision-recall curves": plot_roc_pr(systems, figures / "roc_pr.png"),
        "Confusion matrices at the validated thresholds": plot_confusion_matrices(systems, figures / "confusion.png"),
        "Calibration": plot_calibration(systems, figures / "calibration.png"),
        "Training curves": plot_training_curves(history, train_log, figures / "training.png"),
    }

    header = "".join(f"<th>{m}</th>" for m in METRIC_NAMES)
    table_rows = "".join(_metric_row(SYSTEMS_TASK1[mode], result, result["threshold"])
                         for mode, result in encoder_metrics["modes"].items() if mode in SYSTEMS_TASK1)
    table_rows += _metric_row("Task 2 ECG-LLM (scoring)", llm_metrics["scoring"], _llm_threshold_p(llm_metrics))
    generation = llm_metrics.get("generation", {})
    generation_items = "".join(f"<li>{html.escape(k.replace('_', ' '))}: {v:.4f}</li>" if isinstance(v, float)
                               else f"<li>{html.escape(k.replace('_', ' '))}: {v}</li>"
                               for k, v in generation.items() if not isinstance(v, list))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ECG-LLM report: {html.escape(layout.root.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: center; }}
img {{ max-width: 100%; display: block; margin: 0.5em 0; }}
blockquote {{ background: #f4f4f4; padding: 0.5em 1em; margin: 0.5em 0; }}
.example {{ border-top: 1px solid #ddd; margin-top: 1em; }}
</style></head><body>
<h1>ECG-LLM report: {html.escape(str(layout.root))}</h1>
<p>{html.escape(llm_metrics["system"])}. Test split: {len(ids)} records, {int(labels.sum())} AF; every threshold
was chosen on the validation split. 95% bootstrap intervals under each figure. Written
{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by ecgllm {__version__}.</p>
<h2>Metrics</h2>
<table id="metrics"><tr><th>system</th><th>threshold (P(AF))</th>{header}<th>TP/FN/FP/TN</th></tr>{table_rows}</table>
<h2>Task 2 against Task 1 on the same records</h2>
<table id="comparison"><tr><th>Task 1 mode</th><th>F1 difference (LLM − CNN), 95% CI</th>
<th>ROC AUC difference, 95% CI</th><th>McNemar: only CNN / only LLM right</th><th>p</th></tr>
{_comparison_rows(llm_metrics.get("comparison_with_task1", {}))}</table>
<h2>Generated answers</h2><ul id="generation">{generation_items}</ul>
{"".join(f"<h2>{html.escape(title)}</h2>{_image(path, title)}" for title, path in pictures.items())}
<h2>Test records</h2>
{_example_blocks(choose_examples(llm_rows, examples_per_kind), data_dir, figures)}
</body></html>
"""
    out = Path(out) if out is not None else layout.root / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
