"""`ecgllm evaluate-external` on WFDB records with rhythm annotations that the test writes itself (wrsamp/wrann)."""

import csv
import json

import numpy as np
import pytest
import wfdb

from ecgllm.cli import main
from ecgllm.runs.external import annotated_af

FS = 250


def synthetic_rhythm(seconds: float, af_from_s: float, seed: int) -> np.ndarray:
    """Narrow QRS spikes every 0.8 s, then irregularly irregular beats (RR 0.35-1.0 s) from `af_from_s`."""
    rng = np.random.default_rng(seed)
    beats, t = [], 0.5
    while t < seconds - 0.5:
        beats.append(t)
        t += 0.8 if t < af_from_s else rng.uniform(0.35, 1.0)
    time = np.arange(int(seconds * FS)) / FS
    signal = rng.normal(0, 0.02, len(time))
    for beat in beats:
        signal += 1.2 * np.exp(-0.5 * ((time - beat) / 0.012) ** 2)  # QRS
        signal += 0.2 * np.exp(-0.5 * ((time - beat - 0.25) / 0.05) ** 2)  # T wave
    return signal


def write_record(folder, name: str, seconds: float = 80, af_from_s: float = 40, annotate: bool = True, seed: int = 0):
    lead = synthetic_rhythm(seconds, af_from_s, seed)
    wfdb.wrsamp(name, fs=FS, units=["mV", "mV"], sig_name=["ECG1", "ECG2"], p_signal=np.stack([lead, -0.5 * lead], 1),
                fmt=["16", "16"], adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(folder))
    if annotate:
        wfdb.wrann(name, "atr", sample=np.array([0, int(af_from_s * FS)]), symbol=["+", "+"],
                   aux_note=["(N", "(AFIB"], write_dir=str(folder))


def test_annotated_rhythm_per_sample():
    annotation = wfdb.Annotation("r", "atr", sample=np.array([10, 20, 30, 40]), symbol=["+", "N", "+", "+"],
                                 aux_note=["(N", "", "(AFL", "(AFIB"])
    known, af = annotated_af(annotation, 50, ("(AFIB",))
    assert not known[:10].any() and known[10:].all()
    assert not af[:40].any() and af[40:].all()
    _, af_or_flutter = annotated_af(annotation, 50, ("(AFIB", "(AFL"))
    assert af_or_flutter[30:].all() and not af_or_flutter[:30].any()


def test_evaluate_external_labels_windows_and_goes_on_past_bad_records(smoke_model_dir, tmp_path, capsys):
    data = tmp_path / "db"
    data.mkdir()
    write_record(data, "100", seed=1)
    write_record(data, "101", seconds=60, af_from_s=20, seed=2)
    write_record(data, "102", annotate=False, seed=3)
    (data / "103.hea").write_text("103 1 250 5000\n103.dat 16 200 16 0 0 0 0 ECG\n")  # no signal file
    out = tmp_path / "out"
    assert main(["-q", "evaluate-external", "--wfdb", str(data), "--model", str(smoke_model_dir), "--out", str(out),
                 "--lead", "ECG2", "--device", "cpu"]) == 0
    assert "records left out" in capsys.readouterr().out

    windows = list(csv.DictReader((out / "windows.csv").open()))
    first = [w for w in windows if w["record"] == "100"]
    assert {w["lead"] for w in windows} == {"ECG2"}
    assert len(first) == 19  # 80 s at 300 Hz: 8-s windows every 4 s, the last one aligned to the end
    for w in first:
        start, end = float(w["start_s"]), float(w["end_s"])
        expected = 0.0 if end <= 40 else 1.0 if start >= 40 else (end - 40) / (end - start)
        assert float(w["af_share"]) == pytest.approx(expected, abs=0.01)
        assert int(w["label"]) == int(expected > 0.5)
        assert 0 <= float(w["p_af"]) <= 1

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["n_records"] == len(windows)
    assert metrics["overall"]["n_positive"] == sum(int(w["label"]) for w in windows)
    assert [r["record"] for r in metrics["records"]] == ["100", "101"]
    failures = {f["file"].rsplit("/", 1)[-1]: f["error"] for f in metrics["failures"]}
    assert "no rhythm annotations" in failures["102.hea"] and "unreadable WFDB record" in failures["103.hea"]
    assert "101" in (out / "metrics.txt").read_text()


def test_evaluate_external_on_a_folder_without_records(smoke_model_dir, tmp_path, capsys):
    assert main(["-q", "evaluate-external", "--wfdb", str(tmp_path), "--model", str(smoke_model_dir)]) == 2
    assert "no WFDB records" in capsys.readouterr().err
