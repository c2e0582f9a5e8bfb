"""Diagnosing many files: each is read on its own and diagnosed in batches of `batch_size` recordings (the model runs
once per batch); a bad file is reported and the rest go on.

Used by `ecgllm diagnose` and by the server (one recording's pictures); results follow diagnosis.schema.json.
"""

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgllm.data.preprocess import MIN_DIAGNOSIS_SECONDS
from ecgllm.data.readers import ReadSettings, Recording, expand_inputs, read_recording
from ecgllm.errors import RecordError
from ecgllm.inference.diagnose import Diagnoser, Diagnosis
from ecgllm.llm.modeling_ecgllm import ECGLLM

CSV_COLUMNS = ("record", "seconds", "outcome", "p_af", "threshold", "log_odds", "calibrated", "af", "answer", "error")


@dataclass
class Failure:
    file: str  # the path as given
    error: str  # what is wrong with it


@dataclass
class BatchDiagnosis:
    results: list[Diagnosis] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"results": [r.to_dict() for r in self.results], "failures": [vars(f) for f in self.failures]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def write_csv(self, path: str | Path) -> None:
        """One row per record, then one per failure (its error in the last column)."""
        with Path(path).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for r in self.results:
                writer.writerow([r.record, r.seconds, r.outcome, f"{r.p_af:.6f}",
                                 "" if r.threshold is None else r.threshold, f"{r.log_odds:.4f}", int(r.calibrated),
                                 int(r.af), r.answer, ""])
            for f in self.failures:
                writer.writerow([f.file, *[""] * (len(CSV_COLUMNS) - 2), f.error])


def format_outcome(path: Path, outcome: Diagnosis | RecordError, lang: str | None = None) -> str:
    """One file's outcome for people; `lang` other than the model's shows the answer's template translation."""
    if isinstance(outcome, RecordError):
        return f"error: {outcome}"
    own = lang in (None, outcome.lang)
    answer = outcome.answer if own else f"{outcome.translations[lang]} [template translation of the model's answer]"
    calibration = "" if outcome.calibrated else ", not validated"
    rule = f"threshold {outcome.threshold:.3f}" if outcome.threshold is not None else \
        "P " + ", ".join(f"{c} {p:.3f}" for c, p in outcome.class_probabilities.items())
    text = f"{path}: P(AF) {outcome.p_af:.3f} ({rule}{calibration}) -> {outcome.outcome_title}\n  {answer}\n"
    if own and not (outcome.numbers_grounded and outcome.regularity_grounded):
        measured = ", ".join(f"{name} {value}" for name, value in outcome.rhythm.items())
        text += (f"  [the answer's figures or its word for the RR intervals are not the measured ones; measured: "
                 f"{measured}, RR intervals {outcome.measured_regularity}]\n")
    return text + f"  {outcome.advice}"


def diagnosis_pictures(result: Diagnosis, signal: np.ndarray, fs: float) -> dict[str, bytes]:
    """PNG bytes of the recording's ECG strip (R peaks, per-window P(AF)) and of its RR tachogram + Poincaré plot."""
    from ecgllm.plots.ecg import plot_ecg_strip, plot_rr

    strip, rr = io.BytesIO(), io.BytesIO()
    plot_ecg_strip(signal, fs, strip, result.r_peaks_s, [vars(w) for w in result.windows], result.window_threshold,
                   result.record, result.window_scorer)
    plot_rr(result.r_peaks_s, rr, result.record)
    return {"strip": strip.getvalue(), "rr": rr.getvalue()}


def diagnose_files(model: ECGLLM, paths: list[str | Path], read: ReadSettings | None = None,
                   pictures_dir: Path | None = None,
                   on_done: Callable[[Path, Diagnosis | RecordError], None] | None = None,
                   batch_size: int = 16) -> BatchDiagnosis:
    """Diagnose every recording among `paths` (folders are expanded), read as `read` says for files without a
    header; with `pictures_dir`, write each one's `{record}_strip.png` and `{record}_rr.png` there.
    `on_done(path, result or error)` follows the progress. Under `accelerate launch` each process diagnoses its share
    of the files, and every process gets the whole result back, in the files' order."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    with state.split_between_processes(expand_inputs(paths)) as mine:  # contiguous shares, in rank order
        batch = _diagnose_share(model, mine, read or ReadSettings(), pictures_dir, on_done, batch_size)
    if state.num_processes == 1:
        return batch
    shares = gather_object([batch])
    return BatchDiagnosis([r for share in shares for r in share.results],
                          [f for share in shares for f in share.failures])


def _diagnose_share(model: ECGLLM, paths: list[Path], read: ReadSettings, pictures_dir: Path | None,
                    on_done: Callable[[Path, Diagnosis | RecordError], None] | None,
                    batch_size: int) -> BatchDiagnosis:
    diagnoser = Diagnoser(model, batch_size)
    batch = BatchDiagnosis()
    pending: list[tuple[Path, Recording]] = []

    def report(path: Path, outcome: Diagnosis | RecordError, recording: Recording | None = None) -> None:
        if isinstance(outcome, RecordError):
            batch.failures.append(Failure(str(path), outcome.reason))
        else:
            batch.results.append(outcome)
            if pictures_dir is not None:
                pictures_dir.mkdir(parents=True, exist_ok=True)
                for name, png in diagnosis_pictures(outcome, recording.signal, recording.fs).items():
                    (pictures_dir / f"{outcome.record}_{name}.png").write_bytes(png)
        if on_done:
            on_done(path, outcome)

    def run_pending() -> None:
        outcomes = diagnoser.diagnose_many([(r.signal, r.fs, r.name) for _, r in pending])
        for (path, recording), outcome in zip(pending, outcomes):
            report(path, outcome, recording)
        pending.clear()

    for path in paths:
        try:
            pending.append((path, read_recording(path, read.fs, read.lead, read.gain,
                                                 min_seconds=MIN_DIAGNOSIS_SECONDS)))
        except RecordError as error:
            report(path, error)
        if len(pending) == batch_size:
            run_pending()
    if pending:
        run_pending()
    return batch
