"""How well neurokit2's P-wave delineation finds the P waves that LUDB's cardiologists annotated (lead ii by
default), before any "P waves present / absent" sentence may rest on it.

For every record: R peaks by the project's detector (`rhythm.detect_r_peaks`), P peaks by `nk.ecg_delineate`
(`--method`), compared within the span the cardiologists annotated (their first to last wave boundary). A detected P
peak matches an annotated P wave when it lies within `--tolerance-ms` of the annotated peak (one-to-one).
Sensitivity = matched / annotated P waves, precision = matched / detected P peaks, pooled over records and per
rhythm; for AF records (no P waves annotated) every detection is a false one, and the record-level share of beats with
a detected P wave shows whether "P waves absent" would tell AF apart.

    python benchmarks/p_wave_detection.py --ludb ../shared/data/ludb

Prints the figures and writes them to benchmarks/results/p_wave_detection_ludb.json.
"""

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import wfdb

from ecgllm.rhythm import detect_r_peaks


def annotated_p_peaks(base: Path, lead: str) -> tuple[np.ndarray, int, int]:
    """Peaks of the annotated P waves and the annotated span (first to last boundary), in samples."""
    annotation = wfdb.rdann(str(base), lead)
    symbols, samples = np.array(annotation.symbol), np.asarray(annotation.sample)
    return samples[symbols == "p"], int(samples.min()), int(samples.max())


def detected_p_peaks(signal: np.ndarray, fs: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """P peaks found by neurokit2's delineation, and the R peaks they were looked for at."""
    import neurokit2 as nk

    peaks = detect_r_peaks(signal, fs)
    if len(peaks) < 3:
        return np.array([], dtype=int), peaks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nk.ecg_clean(signal, sampling_rate=int(fs))
        _, waves = nk.ecg_delineate(cleaned, peaks, sampling_rate=int(fs), method=method)
    p = np.array([v for v in waves["ECG_P_Peaks"] if v is not None and not np.isnan(v)], dtype=int)
    return p, peaks


def match(annotated: np.ndarray, detected: np.ndarray, tolerance: int) -> int:
    """One-to-one matches within `tolerance` samples, nearest first."""
    used, matched = set(), 0
    for a in annotated:
        candidates = [(abs(int(d) - int(a)), i) for i, d in enumerate(detected) if i not in used
                      and abs(int(d) - int(a)) <= tolerance]
        if candidates:
            used.add(min(candidates)[1])
            matched += 1
    return matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ludb", type=Path, required=True, help="LUDB folder (rhythm_labels.csv, data/)")
    parser.add_argument("--lead", default="ii")
    parser.add_argument("--method", default="dwt", choices=["dwt", "peak", "cwt"])
    parser.add_argument("--tolerance-ms", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "p_wave_detection_ludb.json")
    args = parser.parse_args()

    started = time.perf_counter()
    rows = []
    with (args.ludb / "rhythm_labels.csv").open() as handle:
        labels = list(csv.DictReader(handle))
    for label in labels:
        base = args.ludb / "data" / label["record"]
        record = wfdb.rdrecord(str(base), channel_names=[args.lead])
        fs = float(record.fs)
        signal = record.p_signal[:, 0]
        annotated, first, last = annotated_p_peaks(base, args.lead)
        try:
            detected, beats = detected_p_peaks(signal, fs, args.method)
        except Exception as error:  # neurokit2 fails on some records; count them, do not hide them
            rows.append({"record": label["record"], "rhythm": label["rhythm"], "error": repr(error)})
            continue
        detected = detected[(detected >= first) & (detected <= last)]
        n_beats = int(((beats >= first) & (beats <= last)).sum())
        matched = match(annotated, detected, int(round(args.tolerance_ms / 1000 * fs)))
        rows.append({"record": label["record"], "rhythm": label["rhythm"], "af": int(label["af"]),
                     "annotated": len(annotated), "detected": len(detected), "matched": matched,
                     "beats": n_beats, "share_of_beats_with_p": len(detected) / max(n_beats, 1)})

    def pooled(subset: list[dict]) -> dict:
        annotated = sum(r["annotated"] for r in subset)
        detected = sum(r["detected"] for r in subset)
        matched = sum(r["matched"] for r in subset)
        return {"records": len(subset), "annotated": annotated, "detected": detected, "matched": matched,
                "sensitivity": matched / annotated if annotated else None,
                "precision": matched / detected if detected else None,
                "median_share_of_beats_with_p": float(np.median([r["share_of_beats_with_p"] for r in subset]))}

    ok = [r for r in rows if "error" not in r]
    rhythms = sorted({r["rhythm"] for r in ok}, key=lambda name: -sum(r["rhythm"] == name for r in ok))
    summary = {"all": pooled(ok), "not_af": pooled([r for r in ok if not r["af"]]),
               "af": pooled([r for r in ok if r["af"]]),
               "per_rhythm": {name: pooled([r for r in ok if r["rhythm"] == name]) for name in rhythms}}
    print(f"P-wave detection on LUDB lead {args.lead}, neurokit2 {args.method}, tolerance {args.tolerance_ms:g} ms; "
          f"{len(rows) - len(ok)} records failed")
    for name, s in [("all records", summary["all"]), ("non-AF records", summary["not_af"]),
                    ("AF records", summary["af"])] + list(summary["per_rhythm"].items()):
        sens = "   -  " if s["sensitivity"] is None else f"{s['sensitivity']:.3f}"
        prec = "   -  " if s["precision"] is None else f"{s['precision']:.3f}"
        print(f"  {name:<28} records {s['records']:>4}  annotated P {s['annotated']:>5}  detected {s['detected']:>5}"
              f"  sensitivity {sens}  precision {prec}  median share of beats with a P "
              f"{s['median_share_of_beats_with_p']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "lead": args.lead,
                                    "method": args.method, "tolerance_ms": args.tolerance_ms, "summary": summary,
                                    "records": rows, "wall_seconds": round(time.perf_counter() - started)}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
