"""External validation on WFDB databases from other devices, at the threshold the model brought from its own
validation split (nothing is tuned on the external data). Three modes:

- `windows`: annotated recordings (MIT-BIH style: an `aux_note` such as "(AFIB", "(AFL", "(N" marks where a rhythm
  starts; it lasts until the next rhythm annotation), cut into the encoder's 8-s windows, each scored with its own
  rhythm figures in the prompt. A window is AF when the annotated AF rhythms cover more than `min_af_share` of it;
  windows before the first rhythm annotation have no label and are left out. Windows of one record are correlated, so
  the overall intervals (bootstrap over windows) are optimistic; the per-record table shows how much records differ.
- `segments`: the same annotated recordings cut into consecutive `segment_seconds` pieces (the length of CinC's
  records), each diagnosed as `diagnose` diagnoses a recording; labelled like windows, its rhythm the one covering
  most of it.
- `records`: one rhythm per record, from the header's `Rhythm:` comment (LUDB), each record diagnosed whole.

In `segments` and `records` modes every piece's decision is `diagnose`'s, and the results give, per rhythm, how many
pieces were called AF (sensitivity for AF, 1 - specificity for the others).
"""

import csv
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import wfdb

from ecgllm.configuration_utils import check_choice, check_range, setting
from ecgllm.data.preprocess import MIN_DIAGNOSIS_SECONDS, resample, window_starts
from ecgllm.data.readers import Recording, read_recording
from ecgllm.errors import DataFolderError, RecordError, SettingError
from ecgllm.evaluation.metrics import binary_metrics, evaluate_decisions, evaluate_predictions, format_evaluation
from ecgllm.inference.diagnose import Diagnoser
from ecgllm.llm.calibration import af_probability, decision_log_odds
from ecgllm.llm.chat import ChatFormatter
from ecgllm.llm.ecg_tokens import encode_signal_windows
from ecgllm.llm.modeling_ecgllm import ECGLLM
from ecgllm.llm.scoring import PrefixCache, score_batched
from ecgllm.rhythm import r_peak_times, rr_evidence

logger = logging.getLogger(__name__)


MODES = ("windows", "segments", "records")


@dataclass
class ExternalConfig:
    mode: str = setting("windows", "windows: 8-s windows of annotated recordings, each scored; segments: annotated "
                                   "recordings cut into segment_seconds pieces, each diagnosed; records: one rhythm "
                                   "per record from the header's 'Rhythm:' comment (LUDB), each diagnosed",
                        choices=MODES)
    annotator: str = setting("atr", "annotation file extension")
    af_rhythms: tuple[str, ...] = setting(("(AFIB",), "comma-separated aux_note rhythms counted as AF, e.g. "
                                                      "'(AFIB,(AFL' to count atrial flutter too")
    min_af_share: float = setting(0.5, "a window is AF when AF covers more than this share of it")
    af_record_rhythms: tuple[str, ...] = setting(("atrial fibrillation",), "records mode: a header rhythm starting "
                                                 "with one of these (comma-separated, case ignored) is AF, e.g. "
                                                 "'atrial fibrillation,atrial flutter' to count flutter too")
    segment_seconds: float = setting(30.0, "segments mode: length of a piece")
    lead: str = setting("0", "lead name or index")
    batch_size: int = setting(16, "windows or recordings per batch")

    def __post_init__(self):
        check_choice("mode", self.mode, MODES)
        check_range("min_af_share", self.min_af_share, 0.0, 1.0)
        check_range("segment_seconds", self.segment_seconds, MIN_DIAGNOSIS_SECONDS)
        check_range("batch_size", self.batch_size, 1)


def rhythm_spans(annotation: wfdb.Annotation, n_samples: int) -> list[tuple[int, int, str]]:
    """(start, end, rhythm) of every annotated rhythm: each lasts until the next rhythm annotation."""
    changes = [(int(sample), note.strip().rstrip("\x00")) for sample, note in
               zip(annotation.sample, annotation.aux_note or []) if note and note.strip().startswith("(")]
    return [(start, changes[n + 1][0] if n + 1 < len(changes) else n_samples, rhythm)
            for n, (start, rhythm) in enumerate(changes)]


def annotated_af(annotation: wfdb.Annotation, n_samples: int, af_rhythms: tuple[str, ...]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: whether a rhythm is annotated there (`known`) and whether it is AF."""
    return _per_sample(rhythm_spans(annotation, n_samples), n_samples, af_rhythms)


def _per_sample(spans: list[tuple[int, int, str]], n_samples: int, af_rhythms: tuple[str, ...]
                ) -> tuple[np.ndarray, np.ndarray]:
    known, af = np.zeros(n_samples, bool), np.zeros(n_samples, bool)
    for start, end, rhythm in spans:
        known[start:end] = True
        af[start:end] = rhythm in af_rhythms
    return known, af


def find_records(folder: Path) -> list[Path]:
    headers = sorted(folder.rglob("*.hea"))
    if not headers:
        raise DataFolderError(f"{folder}: no WFDB records (*.hea)")
    return headers


def read_annotated(header: Path, config: ExternalConfig) -> tuple[Recording, list[tuple[int, int, str]]]:
    """The record's lead and its annotated rhythm spans (in the recording's samples)."""
    base = header.with_suffix("")
    recording = read_recording(header, lead=config.lead, min_seconds=MIN_DIAGNOSIS_SECONDS)
    if not base.with_suffix(f".{config.annotator}").exists():
        raise RecordError(header, f"no rhythm annotations ({base.name}.{config.annotator})")
    try:
        annotation = wfdb.rdann(str(base), config.annotator)
    except Exception as error:  # wfdb raises many types for a damaged annotation file
        raise RecordError(header, f"unreadable annotations ({type(error).__name__}: {error})") from None
    spans = rhythm_spans(annotation, len(recording.signal))
    if not spans:
        raise RecordError(header, "no rhythm annotation (aux_note starting with '(') in the annotation file")
    return recording, spans


def segment_pieces(header: Path, config: ExternalConfig) -> list[dict]:
    """Consecutive `segment_seconds` pieces of an annotated recording that lie wholly within annotated rhythm (a
    recording shorter than one piece is one piece), with their label and the rhythm covering most of each."""
    recording, spans = read_annotated(header, config)
    n, fs = len(recording.signal), recording.fs
    known, af = _per_sample(spans, n, config.af_rhythms)
    length = min(int(round(config.segment_seconds * fs)), n)
    pieces = []
    for start in range(0, n - length + 1, length):
        end = start + length
        if not known[start:end].all():
            continue
        cover = {}
        for a, b, rhythm in spans:
            cover[rhythm] = cover.get(rhythm, 0) + max(0, min(b, end) - max(a, start))
        share = float(af[start:end].mean())
        pieces.append({"record": recording.name, "lead": recording.lead, "start_s": round(start / fs, 2),
                       "end_s": round(end / fs, 2), "rhythm": max(cover, key=cover.get),
                       "af_share": round(share, 3), "label": int(share > config.min_af_share),
                       "signal": recording.signal[start:end], "fs": fs})
    return pieces


def header_rhythm(header: Path) -> str:
    """The rhythm a record's header states in a comment `Rhythm: ...` (LUDB), without its closing full stop."""
    try:
        comments = wfdb.rdheader(str(header.with_suffix(""))).comments
    except Exception as error:  # wfdb raises many types for a broken header
        raise RecordError(header, f"unreadable WFDB header ({type(error).__name__}: {error})") from None
    for comment in comments:
        key, _, value = comment.partition(":")
        if key.strip().lower() == "rhythm" and value.strip():
            return value.strip().rstrip(".").strip()
    raise RecordError(header, "no 'Rhythm:' comment in the header")


def record_piece(header: Path, config: ExternalConfig) -> dict:
    """A whole record labelled by its header's rhythm."""
    rhythm = header_rhythm(header)
    recording = read_recording(header, lead=config.lead, min_seconds=MIN_DIAGNOSIS_SECONDS)
    return {"record": recording.name, "lead": recording.lead, "start_s": 0.0,
            "end_s": round(len(recording.signal) / recording.fs, 2), "rhythm": rhythm, "af_share": None,
            "label": int(rhythm.lower().startswith(tuple(r.lower() for r in config.af_record_rhythms))),
            "signal": recording.signal, "fs": recording.fs}


def diagnose_pieces(model: ECGLLM, pieces: list[dict], config: ExternalConfig, progress: bool = True
                    ) -> tuple[list[dict], list[dict]]:
    """Each piece diagnosed as `diagnose` would: rows (the piece without its signal, with log-odds, P(AF), the
    decision, whether the answer's numbers are the measured ones, and the answer) and failures."""
    from tqdm.auto import tqdm

    diagnoser = Diagnoser(model, config.batch_size)
    rows, failures = [], []
    for start in tqdm(range(0, len(pieces), config.batch_size), desc="diagnosing pieces", disable=not progress):
        batch = pieces[start:start + config.batch_size]
        outcomes = diagnoser.diagnose_many([(p["signal"], p["fs"], p["record"]) for p in batch])
        for piece, outcome in zip(batch, outcomes):
            described = {k: v for k, v in piece.items() if k not in ("signal", "fs")}
            if isinstance(outcome, RecordError):
                failures.append({"file": f"{piece['record']} {piece['start_s']}-{piece['end_s']} s",
                                 "error": outcome.reason})
                continue
            rows.append({**described, "log_odds": outcome.log_odds, "p_af": outcome.p_af, "outcome": outcome.outcome,
                         "called_af": int(outcome.af), "numbers_grounded": outcome.numbers_grounded,
                         "regularity_grounded": outcome.regularity_grounded,
                         "answer": outcome.answer})
    return rows, failures


def per_rhythm(rows: list[dict]) -> list[dict]:
    """For each rhythm: its pieces, how many were called AF, and that share (the sensitivity for an AF rhythm, 1 -
    specificity for the others), and how many got each outcome; most frequent rhythm first."""
    table = {}
    for row in rows:
        entry = table.setdefault(row["rhythm"], {"rhythm": row["rhythm"], "af": bool(row["label"]), "n": 0,
                                                 "called_af": 0, "outcomes": {}})
        entry["n"] += 1
        entry["called_af"] += row["called_af"]
        entry["outcomes"][row["outcome"]] = entry["outcomes"].get(row["outcome"], 0) + 1
    return [{**e, "share_called_af": e["called_af"] / e["n"]} for e in sorted(table.values(), key=lambda e: -e["n"])]


def evaluate_record(model: ECGLLM, header: Path, config: ExternalConfig, prefix: PrefixCache | None = None
                    ) -> list[dict]:
    """One row per labelled window: start, end, annotated AF share, label, P(AF) (scored from `prefix`, the prompt
    prefix's cache, when given)."""
    recording, spans = read_annotated(header, config)
    known, af = _per_sample(spans, len(recording.signal), config.af_rhythms)

    pre = model.encoder.config.preprocess
    signal = resample(recording.signal, recording.fs, pre.fs)
    scale = recording.fs / pre.fs  # model samples -> recording samples
    peaks_s = r_peak_times(recording.signal, recording.fs)
    formatter = ChatFormatter(model.tokenizer, model.config)
    starts = window_starts(len(signal), pre.window, pre.stride)
    rows, prompts, rhythms, keep = [], [], [], []
    for n, start in enumerate(starts):
        a, b = int(start * scale), int(min(start + pre.window, len(signal)) * scale)
        if not known[a:b].all():
            continue
        start_s, end_s = start / pre.fs, (start + pre.window) / pre.fs
        rhythms.append(rr_evidence(peaks_s[(peaks_s >= start_s) & (peaks_s < end_s)]))
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


def _score_windows(model: ECGLLM, headers: list[Path], config: ExternalConfig, threshold: float, progress: bool
                   ) -> tuple[list[dict], dict, list[dict]]:
    from tqdm.auto import tqdm

    windows, records, failures = [], [], []
    formatter = ChatFormatter(model.tokenizer, model.config)
    prefix = PrefixCache(model, formatter, formatter.prompt_ids(None))  # the instruction before the ECG: all alike
    for header in tqdm(headers, desc="external records", disable=not progress):
        try:
            rows = evaluate_record(model, header, config, prefix)
        except RecordError as error:
            failures.append({"file": str(header), "error": error.reason})
            logger.warning("%s", error)
            continue
        if rows:
            windows += rows
            records.append(_record_summary(rows, threshold))
    return windows, {"records": records}, failures


def _diagnose_records(model: ECGLLM, headers: list[Path], config: ExternalConfig, progress: bool
                      ) -> tuple[list[dict], dict, list[dict]]:
    pieces, failures = [], []
    for header in headers:
        try:
            pieces += segment_pieces(header, config) if config.mode == "segments" else [record_piece(header, config)]
        except RecordError as error:
            failures.append({"file": str(header), "error": error.reason})
            logger.warning("%s", error)
    rows, failed = diagnose_pieces(model, pieces, config, progress)
    answers = {name: float(np.mean([row[name] for row in rows])) if rows else None
               for name in ("numbers_grounded", "regularity_grounded")}
    return rows, {"per_rhythm": per_rhythm(rows), "answers": answers}, failures + failed


def evaluate_external(model: ECGLLM, folder: str | Path, out_dir: str | Path, config: ExternalConfig | None = None,
                      progress: bool = True) -> dict:
    """Score every record of a WFDB folder in the config's mode; write metrics.json/.txt and the rows as CSV
    (windows mode: windows.csv and records.csv; segments and records modes: pieces.csv)."""
    config = config or ExternalConfig()
    folder, out_dir = Path(folder), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    four_class = model.config.task == "four"
    if four_class and config.mode == "windows":
        raise SettingError("the windows mode scores a two-class model's log-odds; a four-class model is evaluated "
                           "with --mode segments or --mode records (each piece diagnosed, one outcome of four)")
    threshold = decision_log_odds(model.calibration)
    if model.calibration is None:
        logger.warning("this model has no calibration (it was never evaluated): its decisions are not validated")
    headers = find_records(folder)
    if config.mode == "windows":
        rows, tables, failures = _score_windows(model, headers, config, threshold, progress)
        pre = model.encoder.config.preprocess
        unit = f"{pre.window / pre.fs:g}-s windows"
    else:
        rows, tables, failures = _diagnose_records(model, headers, config, progress)
        unit = f"{config.segment_seconds:g}-s segments" if config.mode == "segments" else "whole records"
    if not rows:
        raise DataFolderError(f"{folder}: no record gave a labelled piece ({len(failures)} failed)")

    labels = np.array([r["label"] for r in rows])
    scores = np.array([r["log_odds"] for r in rows])
    rule = {"decided_by": "class offsets chosen on the model's validation split"} if four_class else \
        {"threshold": threshold, "threshold_p_af": float(af_probability(threshold))}
    overall = evaluate_decisions(labels, [r["called_af"] for r in rows], scores) if four_class else \
        evaluate_predictions(labels, scores, threshold)
    result = {"folder": str(folder), "mode": config.mode, "unit": unit, "config": asdict(config), "task":
              model.config.task, "score": "log-odds", **rule, "calibrated": model.calibration is not None,
              "overall": overall, **tables, "failures": failures}
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    (out_dir / "metrics.txt").write_text(format_external(result) + "\n")
    tables_out = {"windows.csv": rows, "records.csv": tables["records"]} if config.mode == "windows" else \
        {"pieces.csv": rows}
    for name, table in tables_out.items():
        with (out_dir / name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return result


def format_external(result: dict) -> str:
    def share(value):
        return "   -  " if value is None else f"{value:.3f}"

    if result["mode"] == "windows":
        lines = [f"{'record':<16}{'lead':<8}{'windows':>8}{'AF':>6}{'acc':>8}{'sens':>8}{'spec':>8}"
                 f"{'AF burden annotated/predicted':>32}"]
        for r in result["records"]:
            lines.append(f"{r['record']:<16}{r['lead']:<8}{r['windows']:>8}{r['af_windows']:>6}{r['accuracy']:>8.3f}"
                         f"{share(r['sensitivity']):>8}{share(r['specificity']):>8}"
                         f"{r['annotated_af_burden']:>20.3f} / {r['predicted_af_burden']:.3f}")
    else:
        lines = [f"{'rhythm':<36}{'AF?':>5}{'pieces':>8}{'called AF':>11}{'share':>8}  outcomes"]
        for r in result["per_rhythm"]:
            outcomes = " ".join(f"{k} {v}" for k, v in sorted(r.get("outcomes", {}).items()))
            lines.append(f"{r['rhythm'][:35]:<36}{'yes' if r['af'] else 'no':>5}{r['n']:>8}{r['called_af']:>11}"
                         f"{r['share_called_af']:>8.3f}  {outcomes}")
    if "answers" in result:
        lines.append(f"answers citing the measured figures {result['answers']['numbers_grounded']:.3f}, calling the "
                     f"RR intervals what they show {result['answers']['regularity_grounded']:.3f}")
    failures = [f"  {f['file']}: {f['error']}" for f in result["failures"]]
    return "\n\n".join([
        format_evaluation(f"external validation on {result['folder']}, {result['unit']} (decision rule from the "
                          f"model's own validation split)", result["overall"]),
        "\n".join(lines)] + (["left out:\n" + "\n".join(failures)] if failures else []))
