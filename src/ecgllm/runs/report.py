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
from ecgllm.evaluation.four_class import CLASSES as FOUR_CLASSES
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
    """Correct and wrong test records: true AF, true normal, false AF, missed AF (the most confident of each), each
    with its heading."""
    kinds = {"correct AF": (1, 1), "correct normal": (0, 0), "false alarm": (0, 1), "missed AF": (1, 0)}
    chosen = []
    for kind, (label, decision) in kinds.items():
        matching = [r for r in rows if int(r["label"]) == label and int(r["decision"]) == decision]
        matching.sort(key=lambda r: abs(float(r["p_af"]) - 0.5), reverse=True)
        chosen += [(f"{kind} (label {'AF' if label else 'not AF'}, P(AF) {float(r['p_af']):.3f})", r)
                   for r in matching[:per_kind]]
    return chosen


def choose_four_class_examples(rows: list[dict], per_kind: int = 1) -> list[tuple[str, dict]]:
    """For each true class, the most confident right and wrong test records of a four-class model."""
    chosen = []
    for label, name in enumerate(FOUR_CLASSES):
        for right in (True, False):
            matching = [r for r in rows if int(r["label"]) == label and (int(r["decision"]) == label) == right]
            matching.sort(key=lambda r: float(r[f"log_p_{FOUR_CLASSES[int(r['decision'])]}"]), reverse=True)
            chosen += [(f"label {name}, decided {FOUR_CLASSES[int(r['decision'])]} "
                        f"({'right' if right else 'wrong'})", r) for r in matching[:per_kind]]
    return chosen


def _example_blocks(examples: list[tuple[str, dict]], data_dir: Path | None, figures: Path) -> str:
    from ecgllm.data.records import load_cinc_record
    from ecgllm.errors import RecordError
    from ecgllm.plots.ecg import plot_ecg_strip
    from ecgllm.rhythm import r_peak_times

    blocks = []
    for heading, row in examples:
        record = row["record"]
        picture = "<p><em>strip not shown: the data folder is not available</em></p>"
        if data_dir is not None:
            try:
                ecg = load_cinc_record(data_dir / f"{record}.mat")
                peaks = r_peak_times(ecg.signal, ecg.fs)
                path = plot_ecg_strip(ecg.signal, ecg.fs, figures / f"example_{record}.png", peaks,
                                      title=f"{record}: {heading}")
                picture = _image(path, f"ECG strip of {record}")
            except RecordError as error:
                picture = f"<p><em>strip not shown: {html.escape(str(error))}</em></p>"
        blocks.append(f'<div class="example"><h3>{html.escape(record)} — {html.escape(heading)}</h3><blockquote>'
                      f'{html.escape(row.get("answer") or "(not generated)")}</blockquote>{picture}</div>')
    return "".join(blocks)


STYLE = """<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: center; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
blockquote { background: #f4f4f4; padding: 0.5em 1em; margin: 0.5em 0; }
.example { border-top: 1px solid #ddd; margin-top: 1em; }
</style>"""


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
    out = Path(out) if out is not None else layout.root / "report.html"
    if llm_metrics.get("task") == "four":
        out.write_text(_four_class_page(layout, encoder_metrics, llm_metrics, llm_rows, data_dir, examples_per_kind),
                       encoding="utf-8")
        return out

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
{STYLE}</head><body>
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
    out.write_text(page, encoding="utf-8")
    return out


def _interval_cell(block: dict, name: str) -> str:
    low, high = block["intervals_95"][name]
    return f"<td>{block['metrics'][name]:.3f}<br><small>{low:.3f}–{high:.3f}</small></td>"


FOUR_CLASS_COLUMNS = (("four_class", "challenge_score", "challenge score"), ("four_class", "f1_N", "F1 N"),
                      ("four_class", "f1_A", "F1 A"), ("four_class", "f1_O", "F1 O"), ("four_class", "f1_~", "F1 ~"),
                      ("af_vs_rest", "f1", "AF vs rest F1"), ("af_vs_rest", "sensitivity", "AF sensitivity"),
                      ("af_vs_rest", "specificity", "AF specificity"), ("af_vs_rest", "roc_auc", "AF ROC AUC"),
                      ("n_vs_a", "f1", "N vs A F1"))


def _four_class_comparison_row(mode: str, c: dict) -> str:
    difference, interval, test = c["difference_b_minus_a"], c["intervals_95"], c["mcnemar"]
    cells = "".join(f"<td>{difference[k]:+.3f} ({interval[k][0]:+.3f} to {interval[k][1]:+.3f})</td>"
                    for k in ("challenge_score", "af_f1"))
    return (f"<tr><th>{html.escape(SYSTEMS_TASK1.get(mode, mode))}</th>{cells}<td>{test['only_a_right']} / "
            f"{test['only_b_right']}</td><td>{test['p_value']:.4f}</td></tr>")


def _four_class_page(layout: RunLayout, encoder_metrics: dict, llm_metrics: dict, llm_rows: list[dict],
                     data_dir: Path | None, examples_per_kind: int) -> str:
    """The report of a four-class run: per-class and AF figures of both systems, their confusion matrices, the
    paired comparison, the training curves and right and wrong test records of each class."""
    from ecgllm.plots.run import plot_training_curves

    systems = {SYSTEMS_TASK1[mode]: result for mode, result in encoder_metrics["modes"].items()
               if mode in SYSTEMS_TASK1}
    systems["ECG-LLM"] = llm_metrics["scoring"]
    header = "".join(f"<th>{html.escape(title)}</th>" for _, _, title in FOUR_CLASS_COLUMNS)
    rows = "".join(f"<tr><th>{html.escape(name)}</th>"
                   + "".join(_interval_cell(r[block], metric) for block, metric, _ in FOUR_CLASS_COLUMNS)
                   + f"<td>{r['called_af']['O']:.1%}</td><td>{r['called_af']['~']:.1%}</td></tr>"
                   for name, r in systems.items())
    matrices = "".join(
        f'<table id="confusion-{html.escape(name.split(",")[0].replace(" ", "-"))}"><caption>{html.escape(name)}: '
        f"rows true, columns decided</caption><tr><th></th>{''.join(f'<th>{c}</th>' for c in FOUR_CLASSES)}</tr>"
        + "".join(f"<tr><th>{c}</th>{''.join(f'<td>{v}</td>' for v in row)}</tr>"
                  for c, row in zip(FOUR_CLASSES, r["confusion_matrix"]["counts"])) + "</table>"
        for name, r in systems.items())
    comparison = "".join(_four_class_comparison_row(mode, c["llm_minus_cnn"])
                         for mode, c in llm_metrics.get("comparison_with_task1", {}).items())
    figures = layout.root / "report"
    figures.mkdir(parents=True, exist_ok=True)
    history = _read_csv(layout.encoder / "history.csv") if (layout.encoder / "history.csv").exists() else []
    train_log = _read_csv(layout.llm / "train_log.csv") if (layout.llm / "train_log.csv").exists() else []
    curves = plot_training_curves(history, train_log, figures / "training.png")
    counts = ", ".join(f"{c} {n}" for c, n in llm_metrics["scoring"]["class_counts"].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ECG-LLM report: {html.escape(layout.root.name)}</title>
{STYLE}</head><body>
<h1>ECG-LLM report: {html.escape(str(layout.root))}</h1>
<p>{html.escape(llm_metrics["system"])}. Test split: {llm_metrics["scoring"]["n_records"]} records ({counts}). Every
system decides the class whose log P plus its offset is highest, the offsets chosen on the validation split to
maximise the challenge score (mean F1 of N, A and O). 95% bootstrap intervals under each figure. Written
{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by ecgllm {__version__}.</p>
<h2>Metrics</h2>
<table id="metrics"><tr><th>system</th>{header}<th>O called AF</th><th>~ called AF</th></tr>{rows}</table>
<h2>Confusion matrices</h2>{matrices}
<h2>ECG-LLM against the MS-CNN on the same records</h2>
<table id="comparison"><tr><th>MS-CNN mode</th><th>challenge score difference (LLM − CNN), 95% CI</th>
<th>AF F1 difference, 95% CI</th><th>McNemar (class right): only CNN / only LLM</th><th>p</th></tr>{comparison}</table>
<h2>Training curves</h2>{_image(curves, "training curves")}
<h2>Test records</h2>
{_example_blocks(choose_four_class_examples(llm_rows, examples_per_kind), data_dir, figures)}
</body></html>
"""
