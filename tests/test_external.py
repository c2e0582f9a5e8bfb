"""`ecgllm evaluate-external` on WFDB records with rhythm annotations that the test writes itself (wrsamp/wrann),
and on real LUDB records (a rhythm per record in the header)."""

import csv
import json
import shutil

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
    assert "left out:" in capsys.readouterr().out

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


def test_segments_are_diagnosed_with_their_annotated_rhythm(smoke_model_dir, tmp_path):
    """Segments mode: consecutive 20-s pieces within annotated rhythm, labelled by their AF share, each diagnosed as
    `diagnose` would; the per-rhythm table counts what was called AF; a record without annotations is reported."""
    data = tmp_path / "db"
    data.mkdir()
    write_record(data, "100", seed=1)  # 80 s, AF from 40 s
    write_record(data, "101", seconds=70, af_from_s=30, seed=2)  # AF from 30 s: the piece 20-40 s is half AF
    write_record(data, "102", annotate=False, seed=3)
    out = tmp_path / "out"
    assert main(["-q", "evaluate-external", "--wfdb", str(data), "--model", str(smoke_model_dir), "--out", str(out),
                 "--mode", "segments", "--segment-seconds", "20", "--device", "cpu"]) == 0
    pieces = list(csv.DictReader((out / "pieces.csv").open()))
    spans = [(p["record"], float(p["start_s"]), float(p["end_s"]), p["rhythm"], int(p["label"])) for p in pieces]
    assert spans == [("100", 0, 20, "(N", 0), ("100", 20, 40, "(N", 0), ("100", 40, 60, "(AFIB", 1),
                     ("100", 60, 80, "(AFIB", 1), ("101", 0, 20, "(N", 0), ("101", 20, 40, "(N", 0),
                     ("101", 40, 60, "(AFIB", 1)]  # 101's 20-40 s: AF share 0.5 is not more than 0.5
    assert all(int(p["called_af"]) == int(float(p["log_odds"]) >= json.loads((out / "metrics.json").read_text())
                                          ["threshold"]) for p in pieces)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "segments" and metrics["unit"] == "20-s segments"
    assert {r["rhythm"]: (r["n"], r["af"]) for r in metrics["per_rhythm"]} == {"(N": (4, False), "(AFIB": (3, True)}
    called = {r["rhythm"]: r["called_af"] for r in metrics["per_rhythm"]}
    assert called["(AFIB"] == metrics["overall"]["confusion_matrix"]["tp"]
    assert called["(N"] == metrics["overall"]["confusion_matrix"]["fp"]
    assert "no rhythm annotations" in metrics["failures"][0]["error"]


def test_ludb_records_are_labelled_by_their_header_rhythm(smoke_model_dir, ludb_dir, tmp_path, capsys):
    """Records mode on real LUDB records (500 Hz, 12 leads, 10 s): lead ii by name, the label from the header's
    `Rhythm:` comment (flutter is not AF unless asked), and a header without one is reported, not guessed."""
    data = tmp_path / "ludb"
    data.mkdir()
    for record in ("1", "2", "8", "35"):  # sinus bradycardia, sinus rhythm, AF, typical flutter
        for suffix in (".hea", ".dat"):
            shutil.copy(ludb_dir / "data" / f"{record}{suffix}", data / f"{record}{suffix}")
    header = (data / "2.hea").read_text()
    (data / "3.hea").write_text(header.replace("2 12", "3 12", 1).replace("#Rhythm: Sinus rhythm.", "#No rhythm."))
    shutil.copy(data / "2.dat", data / "3.dat")
    out = tmp_path / "out"
    assert main(["-q", "evaluate-external", "--wfdb", str(data), "--model", str(smoke_model_dir), "--out", str(out),
                 "--mode", "records", "--lead", "ii", "--device", "cpu"]) == 0
    pieces = {p["record"]: p for p in csv.DictReader((out / "pieces.csv").open())}
    assert {r: (p["rhythm"], p["label"], p["lead"], p["end_s"]) for r, p in pieces.items()} == {
        "1": ("Sinus bradycardia", "0", "ii", "10.0"), "2": ("Sinus rhythm", "0", "ii", "10.0"),
        "8": ("Atrial fibrillation", "1", "ii", "10.0"), "35": ("Atrial flutter, typical", "0", "ii", "10.0")}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["n_records"] == 4 and metrics["overall"]["n_positive"] == 1
    # the share of answers whose word for the RR intervals is what the measured figures show, from the pieces
    assert metrics["answers"]["regularity_grounded"] == np.mean([p["regularity_grounded"] == "True"
                                                                 for p in pieces.values()])
    assert [f["file"].rsplit("/", 1)[-1] for f in metrics["failures"]] == ["3.hea"]
    assert "no 'Rhythm:' comment" in metrics["failures"][0]["error"]
    assert "Atrial flutter, typical" in capsys.readouterr().out

    flutter_too = tmp_path / "flutter"
    assert main(["-q", "evaluate-external", "--wfdb", str(data), "--model", str(smoke_model_dir), "--out",
                 str(flutter_too), "--mode", "records", "--lead", "ii", "--device", "cpu", "--af-record-rhythms",
                 "atrial fibrillation,atrial flutter"]) == 0
    labels = {p["record"]: p["label"] for p in csv.DictReader((flutter_too / "pieces.csv").open())}
    assert labels == {"1": "0", "2": "0", "8": "1", "35": "1"}


def test_a_four_class_model_on_ludb_records_reports_its_outcomes(smoke_encoder, ludb_dir, tmp_path, capsys):
    """Records mode with a four-class model: AF decisions are its outcomes (here set by offsets that make "another
    rhythm" win), the per-rhythm table counts every outcome, and the windows mode (log-odds only) is refused."""
    import dataclasses

    import torch

    from ecgllm.llm.calibration import Calibration
    from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
    from ecgllm.llm.modeling_ecgllm import ECGLLM

    data = tmp_path / "ludb"
    data.mkdir()
    for record in ("1", "8"):  # sinus bradycardia, AF
        for suffix in (".hea", ".dat"):
            shutil.copy(ludb_dir / "data" / f"{record}{suffix}", data / f"{record}{suffix}")
    torch.manual_seed(0)
    model = ECGLLM.build(dataclasses.replace(LLM_PRESETS["smoke"][0], task="four"), smoke_encoder)
    model.calibration = Calibration(0.0, "test", (0.0, 0.0, 80.0, 0.0))
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    assert main(["-q", "evaluate-external", "--wfdb", str(data), "--model", str(tmp_path / "model"), "--out", str(out),
                 "--mode", "records", "--lead", "ii", "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "four" and "threshold" not in metrics["overall"]
    assert {r["rhythm"]: r["outcomes"] for r in metrics["per_rhythm"]} == {"Sinus bradycardia": {"O": 1},
                                                                          "Atrial fibrillation": {"O": 1}}
    assert metrics["overall"]["confusion_matrix"] == {"tn": 1, "fp": 0, "fn": 1, "tp": 0}
    assert "decided by the model's class offsets" in (out / "metrics.txt").read_text()
    assert main(["-q", "evaluate-external", "--wfdb", str(data), "--model", str(tmp_path / "model"), "--out", str(out),
                 "--mode", "windows", "--device", "cpu"]) == 2
    assert "--mode segments or --mode records" in capsys.readouterr().err
