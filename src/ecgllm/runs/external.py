"""External validation on any WFDB database with rhythm annotations (MIT-BIH style: `aux_note` such as "(AFIB",
"(AFL", "(N" marks where a rhythm starts; it lasts until the next rhythm annotation).

Each record is read (one lead), resampled to the model's rate and cut into the encoder's 8-s windows. A window is
labelled AF when the annotated AF rhythms cover more than `min_af_share` of it; windows that start before the first
rhythm annotation have no label and are left out. Each window is scored with its own rhythm figures in the prompt, at
the threshold the model brought from its own validation split (nothing is tuned on the external data). Windows of
one record are correlated, so the overall intervals (bootstrap over windows) are optimistic; the per-record table
shows how much records differ.
"""

import csv
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import wfdb

from ecgllm.configuration_utils import check_range, setting
from ecgllm.data.preprocess import resample, window_starts
from ecgllm.data.readers import read_recording
from ecgllm.errors import DataFolderError, RecordError
from ecgllm.evaluation.metrics import binary_metrics, evaluate_predictions, format_evaluation
from ecgllm.inference.diagnose import MIN_DIAGNOSIS_SECONDS
from ecgllm.llm.calibration import af_probability, decision_log_odds
from ecgllm.llm.chat import ChatFormatter
from ecgllm.llm.ecg_tokens import encode_signal_windows
from ecgllm.llm.modeling_ecgllm import ECGLLM
from ecgllm.llm.scoring import PrefixCache, score_batched
from ecgllm.rhythm import detect_r_peaks, rr_statistics

logger = logging.getLogger(__name__)


@dataclass
class ExternalConfig:
    annotator: str = setting("atr", "annotation file extension")
    af_rhythms: tuple[str, ...] = setting(("(AFIB",), "comma-separated aux_note rhythms counted as AF, e.g. "
                                                      "'(AFIB,(AFL' to count atrial flutter too")
    min_af_share: float = setting(0.5, "a window is AF when AF covers more than this share of it")
    lead: str = setting("0", "lead name or index")
    batch_size: int = setting(16, "windows per scoring batch")

    def __post_init__(self):
        check_range("min_af_share", self.min_af_share, 0.0, 1.0)
        check_range("batch_size", self.batch_size, 1)


def annotated_af(annotation: wfdb.Annotation, n_samples: int, af_rhythms: tuple[str, ...]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: whether a rhythm is annotated there (`known`) and whether it is AF."""
    known, af = np.zeros(n_samples, bool), np.zeros(n_samples, bool)
    changes = [(int(sample), note.strip().rstrip("\x00")) for sample, note in
               zip(annotation.sample, annotation.aux_note or []) if note and note.strip().startswith("(")]
    for n, (start, rhythm) in enumerate(changes):
        end = changes[n + 1][0] if n + 1 < len(changes) else n_samples
        known[start:end] = True
        af[start:end] = rhythm in af_rhythms
    return known, af


def find_records(folder: Path) -> list[Path]:
    headers = sorted(folder.rglob("*.hea"))
    if not headers:
        raise DataFolderError(f"{folder}: no WFDB records (*.hea)")
    return headers


def evaluate_record(model: ECGLLM, header: Path, config: ExternalConfig, prefix: PrefixCache | None = None
                    ) -> list[dict]:
    """One row per labelled window: start, end, annotated AF share, label, P(AF) (scored from `prefix`, the prompt
    prefix's cache, when given)."""
    base = header.with_suffix("")
    recording = read_recording(header, lead=config.lead, min_seconds=MIN_DIAGNOSIS_SECONDS)
    if not base.with_suffix(f".{config.annotator}").exists():
        raise RecordError(header, f"no rhythm annotations ({base.name}.{config.annotator})")
    try:
        annotation = wfdb.rdann(str(base), config.annotator)
    except Exception as error:  # wfdb raises many types for a damaged annotation file
        raise RecordError(header, f"unreadable annotations ({type(error).__name__}: {error})") from None
    known, af = annotated_af(annotation, len(recording.signal), config.af_rhythms)
    if not known.any():
        raise RecordError(header, "no rhythm annotation (aux_note starting with '(') in the annotation file")

    pre = model.encoder.config.preprocess
    signal = resample(recording.signal, recording.fs, pre.fs)
    scale = recording.fs / pre.fs  # model samples -> recording samples
    peaks = detect_r_peaks(signal, pre.fs)
    formatter = ChatFormatter(model.tokenizer, model.config)
    starts = window_starts(len(signal), pre.window, pre.stride)
    rows, prompts, rhythms, keep = [], [], [], []
    for n, start in enumerate(starts):
        a, b = int(start * scale), int(min(start + pre.window, len(signal)) * scale)
        if not known[a:b].all():
            continue
        in_window = peaks[(peaks >= start) & (peaks < start + pre.window)]
        rhythms.append(rr_statistics(np.diff(in_window) / pre.fs * 1000.0, len(in_window)))
        prompts.append(formatter.prompt_ids(rhythms[-1]))
        share = float(af[a:b].mean())
        rows.append({"record": recording.name, "lead": recording.lead, "start_s": round(start / pre.fs, 2),
                     "end_s": round(b / recording.fs, 2), "af_share": round(share, 3),
                     "label": int(share > config.min_af_share)})
        keep.append(n)
    if not rows:
        return []
    tokens = encode_signal_windows(model.encoder, signal, model.config.ecg_tokens, config.batch_size)[keep]
    inputs = model.projector_input(tokens, rhythms)
    for row, log_odds in zip(rows, score_batched(model, formatter, prompts, inputs, config.batch_size, prefix)):
        row["log_odds"], row["p_af"] = float(log_odds), float(af_probability(log_odds))
    return rows


def _record_summary(rows: list[dict], threshold: float) -> dict:
    labels = np.array([r["label"] for r in rows])
    p = np.array([r["log_odds"] for r in rows])
    metrics = binary_metrics(labels, p, threshold)
    return {"record": rows[0]["record"], "lead": rows[0]["lead"], "windows": len(rows), "af_windows": int(labels.sum()),
            "annotated_af_burden": float(labels.mean()), "predicted_af_burden": float(np.mean(p >= threshold)),
            "accuracy": metrics["accuracy"],
            "sensitivity": metrics["sensitivity"] if labels.any() else None,
            "specificity": metrics["specificity"] if not labels.all() else None}


def evaluate_external(model: ECGLLM, folder: str | Path, out_dir: str | Path, config: ExternalConfig | None = None,
                      progress: bool = True) -> dict:
    """Score every annotated record of a WFDB folder; write metrics.json/.txt, records.csv and windows.csv."""
    from tqdm.auto import tqdm

    config = config or ExternalConfig()
    folder, out_dir = Path(folder), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threshold = decision_log_odds(model.calibration)
    if model.calibration is None:
        logger.warning("this model has no calibration (it was never evaluated): windows are decided at the "
                       "unvalidated P(AF) 0.5")
    windows, records, failures = [], [], []
    formatter = ChatFormatter(model.tokenizer, model.config)
    prefix = PrefixCache(model, formatter, formatter.prompt_ids(None))  # the instruction before the ECG: all alike
    for header in tqdm(find_records(folder), desc="external records", disable=not progress):
        try:
            rows = evaluate_record(model, header, config, prefix)
        except RecordError as error:
            failures.append({"file": str(header), "error": error.reason})
            logger.warning("%s", error)
            continue
        if rows:
            windows += rows
            records.append(_record_summary(rows, threshold))
    if not windows:
        raise DataFolderError(f"{folder}: no record gave a labelled window ({len(failures)} failed)")

    labels = np.array([r["label"] for r in windows])
    p = np.array([r["log_odds"] for r in windows])
    result = {"folder": str(folder), "config": asdict(config), "score": "log-odds", "threshold": threshold,
              "threshold_p_af": float(af_probability(threshold)),
              "calibrated": model.calibration is not None,
              "window_seconds": model.encoder.config.preprocess.window / model.encoder.config.preprocess.fs,
              "overall": evaluate_predictions(labels, p, threshold), "records": records, "failures": failures}
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    (out_dir / "metrics.txt").write_text(format_external(result) + "\n")
    for name, rows in (("windows.csv", windows), ("records.csv", records)):
        with (out_dir / name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return result


def format_external(result: dict) -> str:
    def share(value):
        return "   -  " if value is None else f"{value:.3f}"

    lines = [f"{'record':<16}{'lead':<8}{'windows':>8}{'AF':>6}{'acc':>8}{'sens':>8}{'spec':>8}"
             f"{'AF burden annotated/predicted':>32}"]
    for r in result["records"]:
        lines.append(f"{r['record']:<16}{r['lead']:<8}{r['windows']:>8}{r['af_windows']:>6}{r['accuracy']:>8.3f}"
                     f"{share(r['sensitivity']):>8}{share(r['specificity']):>8}"
                     f"{r['annotated_af_burden']:>20.3f} / {r['predicted_af_burden']:.3f}")
    failures = [f"  {f['file']}: {f['error']}" for f in result["failures"]]
    return "\n\n".join([
        format_evaluation(f"external validation on {result['folder']}, {result['window_seconds']:g}-s windows "
                          f"(threshold from the model's own validation split)", result["overall"]),
        "\n".join(lines)] + (["records left out:\n" + "\n".join(failures)] if failures else []))
