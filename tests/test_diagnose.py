"""Diagnosing whole recordings with the real pipeline (tiny random LM): windows, aggregation, decision, batch errors."""

import csv
import dataclasses
import itertools
import json
import shutil
from pathlib import Path

import jsonschema
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import ecgllm.inference.diagnose as diagnose_module
from ecgllm.cli import main
from ecgllm.data.readers import read_recording
from ecgllm.errors import RecordError
from ecgllm.inference.batch import format_outcome
from ecgllm.inference.diagnose import diagnose
from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
from ecgllm.llm.modeling_ecgllm import ECGLLM
from ecgllm.llm.prompts import DECISION
from ecgllm.rhythm import IRREGULAR_RR_CV


def test_diagnose_long_record_at_another_rate(smoke_model_dir, cinc_dir):
    model = ECGLLM.from_pretrained(smoke_model_dir)
    recording = read_recording(cinc_dir / "A00005.mat")  # 60 s AF record at 300 Hz
    at_250 = np.interp(np.arange(0, len(recording.signal), 300 / 250), np.arange(len(recording.signal)),
                       recording.signal)
    result = diagnose(model, at_250, 250.0, "A00005@250Hz")
    assert result.fs_input == 250 and result.fs_model == 300
    assert abs(result.seconds - len(recording.signal) / recording.fs) < 0.05
    assert len(result.windows) == 14  # 60 s, 8-s windows every 4 s
    assert result.windows[-1].end_s == pytest.approx(result.seconds, abs=0.01)
    assert result.p_af == pytest.approx(np.mean([w.p_af for w in result.windows]))
    assert result.af == (result.log_odds >= result.threshold_log_odds)
    assert result.answer.startswith(DECISION["zh"][int(result.af)])
    english = result.translations["en"]
    assert english.startswith(DECISION["en"][int(result.af)]) and set(result.translations) == {"en"}
    assert f"CV {result.rhythm['rr_cv']}" in english and f"{result.rhythm['heart_rate_bpm']} bpm" in english
    assert 80 <= len(result.r_peaks_s) <= 130 and result.rhythm["n_beats"] == str(len(result.r_peaks_s))
    json.dumps(result.to_dict())
    measured_cv = float(result.rhythm["rr_cv"])
    assert result.measured_regularity == ("irregular" if measured_cv >= IRREGULAR_RR_CV else "regular")
    for numbers, word in itertools.product((True, False), repeat=2):  # the tiny random LM wrote whatever it did
        grounded = numbers and word
        flagged = dataclasses.replace(result, numbers_grounded=numbers, regularity_grounded=word)
        text = format_outcome(Path("A00005.mat"), flagged)
        assert ("not the measured ones; measured:" in text) is not grounded
        assert grounded or f"rr_cv {result.rhythm['rr_cv']}, " in text
        assert grounded or text.count(f"RR intervals {result.measured_regularity}]") == 1
        # A template translation cites the measured figures.
        assert "not the measured" not in format_outcome(Path("A00005.mat"), flagged, lang="en")
    assert diagnose(model, at_250, 250.0, "A00005@250Hz").p_af == pytest.approx(result.p_af)
    with pytest.raises(RecordError, match="too short to diagnose"):
        diagnose(model, recording.signal[:1500], 300.0, "short")


def test_the_rhythm_is_measured_as_in_training_whatever_the_encoder_s_rate(smoke_model_dir, cinc_dir):
    """The LLM learnt RR figures measured at CinC's 300 Hz: a 150 Hz encoder changes the windows, not the figures."""
    from ecgllm.rhythm import measure_rhythm

    model = ECGLLM.from_pretrained(smoke_model_dir)
    recording = read_recording(cinc_dir / "A00005.mat")  # 60 s at 300 Hz
    at_300 = diagnose(model, recording.signal, 300.0, "A00005")
    model.encoder.config.preprocess.fs = 150.0
    at_150 = diagnose(model, recording.signal, 300.0, "A00005")
    assert at_150.fs_model == 150 and len(at_150.windows) == 7  # 16-s windows every 8 s
    assert at_150.rhythm == at_300.rhythm == measure_rhythm(recording.signal, 300.0).formatted()
    assert at_150.r_peaks_s == at_300.r_peaks_s


def test_cli_diagnose_folder_goes_on_past_bad_files(smoke_model_dir, cinc_dir, tmp_path, capsys):
    for name in ("A00001", "A00004"):
        for suffix in (".mat", ".hea"):
            shutil.copy(cinc_dir / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    (tmp_path / "broken.npy").write_text("not numpy")
    assert main(["-q", "diagnose", str(tmp_path), "--model", str(smoke_model_dir), "--fs", "300", "--json",
                 "--csv", str(tmp_path / "out.csv"), "--plots", str(tmp_path / "plots")]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    schema = json.loads((Path(diagnose_module.__file__).parent / "diagnosis.schema.json").read_text())
    jsonschema.validate(report, schema)
    assert [r["record"] for r in report["results"]] == ["A00001", "A00004"]
    assert report["failures"][0]["file"].endswith("broken.npy") and "unreadable" in report["failures"][0]["error"]
    assert "broken.npy" in captured.err
    rows = list(csv.reader((tmp_path / "out.csv").open(newline="")))
    assert len(rows) == 4 and rows[-1][0] == str(tmp_path / "broken.npy") and "unreadable" in rows[-1][-1]
    for name in ("A00001_strip.png", "A00001_rr.png", "A00004_strip.png", "A00004_rr.png"):
        picture = plt.imread(tmp_path / "plots" / name)
        assert picture.shape[0] > 200 and picture.shape[1] > 600 and picture.std() > 0.05  # drawn, not blank
    strip = plt.imread(tmp_path / "plots" / "A00001_strip.png")
    assert strip.shape[0] > 3 * 150  # 30 s: three 10-s rows at true paper scale


def test_diagnose_with_whole_record_tokens(smoke_encoder, cinc_dir):
    import dataclasses

    torch.manual_seed(0)
    model = ECGLLM.build(dataclasses.replace(LLM_PRESETS["smoke"][0], ecg_input="whole"), smoke_encoder).eval()
    recording = read_recording(cinc_dir / "A00001.mat")
    result = diagnose(model, recording.signal, recording.fs, "A00001")
    assert result.aggregation == "tokens" and len(result.windows) == 7
    assert result.af == (result.log_odds >= result.threshold_log_odds)
    # The bars are the encoder's own: its head on each window (the LM never saw single windows in training).
    assert result.window_scorer == "encoder"
    assert result.window_threshold == model.encoder.config.thresholds["center"]
    from ecgllm.data.preprocess import record_windows

    pre = model.encoder.config.preprocess
    windows, _ = record_windows([recording.signal], "whole", pre.window, pre.stride)
    with torch.no_grad():
        by_encoder = torch.sigmoid(model.encoder(torch.as_tensor(windows)[:, None])).numpy()
    # the smoke model's 2 ECG tokens pool the feature map in two overlapping halves: close to, not exactly, its mean
    assert [w.p_af for w in result.windows] == pytest.approx(by_encoder.tolist(), abs=0.05)


def test_a_batch_equals_one_by_one_and_goes_on_past_a_bad_recording(smoke_model_dir, cinc_dir):
    from ecgllm.inference.diagnose import Diagnoser

    model = ECGLLM.from_pretrained(smoke_model_dir)
    diagnoser = Diagnoser(model, batch_size=2)
    signals = [(read_recording(cinc_dir / f"{name}.mat").signal, 300.0, name) for name in ("A00001", "A00004")]
    signals.insert(1, (signals[0][0][:600], 300.0, "too_short"))
    signals.append((read_recording(cinc_dir / "A00005.mat").signal, 300.0, "A00005"))
    together = diagnoser.diagnose_many(signals)
    assert isinstance(together[1], RecordError) and "too_short" in str(together[1])
    for (signal, fs, name), outcome in zip(signals, together):
        if name == "too_short":
            continue
        alone = diagnoser(signal, fs, name)
        assert outcome.record == name and outcome.p_af == pytest.approx(alone.p_af, abs=1e-5)
        assert outcome.answer == alone.answer
        # batching moves the float kernels' summation order: probabilities agree to rounding, not bit for bit
        assert [(w.start_s, w.end_s) for w in outcome.windows] == [(w.start_s, w.end_s) for w in alone.windows]
        assert [w.p_af for w in outcome.windows] == pytest.approx([w.p_af for w in alone.windows], abs=1e-5)


def test_cli_diagnose_bundled_examples(smoke_model_dir, capsys):
    assert main(["-q", "diagnose", "--examples", "--model", str(smoke_model_dir), "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["record"] for r in report["results"]] == ["A00006", "A00007", "A00027", "A00090"]
    assert report["failures"] == []
    assert main(["-q", "diagnose", "--model", str(smoke_model_dir)]) == 2
    assert "nothing to diagnose" in capsys.readouterr().err
    assert main(["-q", "diagnose", "--examples", "--model", str(smoke_model_dir), "--device", "tpu9"]) == 2
    assert "unknown device" in capsys.readouterr().err


def test_loaded_for_inference_the_adapter_is_folded_in_and_answers_alike(smoke_model_dir, cinc_dir):
    from ecgllm.runs.layout import load_model

    merged = load_model(smoke_model_dir, "cpu")
    lora_layers = [module for module in merged.lm.modules() if hasattr(module, "merged")]
    assert lora_layers and all(module.merged for module in lora_layers)
    recording = read_recording(cinc_dir / "A00004.mat")
    alone = diagnose(ECGLLM.from_pretrained(smoke_model_dir), recording.signal, recording.fs, "A00004")
    folded = diagnose(merged, recording.signal, recording.fs, "A00004")
    assert folded.p_af == pytest.approx(alone.p_af, abs=1e-4) and folded.answer == alone.answer


def test_window_log_odds_aggregate_like_their_probabilities():
    """A centre-crop model's windows are aggregated in log space: the log-odds of the mean P(AF), and still apart
    where the probabilities would all read 1.0."""
    from scipy.special import expit, logit

    from ecgllm.inference.diagnose import aggregate_log_odds

    scores = np.array([-1.5, 0.3, 2.0])
    assert aggregate_log_odds(scores, "mean") == pytest.approx(logit(expit(scores).mean()))
    assert aggregate_log_odds(scores, "max") == 2.0
    confident, more = aggregate_log_odds(np.array([40.0, 45.0]), "mean"), aggregate_log_odds(np.array([50.0, 55.0]),
                                                                                                 "mean")
    assert 40 < confident < more < 55 and expit(40.0) == expit(50.0) == 1.0
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_log_odds(scores, "median")


@pytest.mark.parametrize("ecg_input", ["center", "whole"])
def test_a_four_class_model_answers_one_of_four_outcomes_at_its_offsets(smoke_encoder, cinc_dir, ecg_input, tmp_path):
    """Plumbing on real records of the "other rhythm" and "too noisy" classes (the tiny model is random: its outcome
    is set by the offsets, which here make "another rhythm" and then "too noisy" win whatever it says)."""
    import dataclasses

    from ecgllm.inference.batch import BatchDiagnosis
    from ecgllm.inference.diagnose import OUTCOMES, Diagnoser
    from ecgllm.llm.calibration import Calibration

    rows = [line.split(",") for line in (cinc_dir / "REFERENCE.csv").read_text().split()]
    names = [next(n for n, label in rows if label == "O"), next(n for n, label in rows if label == "~")]
    torch.manual_seed(0)
    config = dataclasses.replace(LLM_PRESETS["smoke"][0], task="four", ecg_input=ecg_input)
    model = ECGLLM.build(config, smoke_encoder).eval()
    recordings = [(read_recording(cinc_dir / f"{name}.mat").signal, 300.0, name) for name in names]
    schema = json.loads((Path(diagnose_module.__file__).parent / "diagnosis.schema.json").read_text())
    for outcome, offsets in (("O", (0.0, 0.0, 80.0, 0.0)), ("~", (0.0, 0.0, 0.0, 80.0))):
        model.calibration = Calibration(0.0, "test", offsets)
        results = Diagnoser(model).diagnose_many(recordings)
        for result in results:
            assert result.outcome == outcome and not result.af and result.threshold is None
            assert (result.outcome_title, result.advice) == OUTCOMES["four"][outcome]
            assert result.answer.startswith(DECISION["zh"]["NAO~".index(outcome)])
            assert result.translations["en"].startswith(DECISION["en"]["NAO~".index(outcome)])
            assert set(result.class_probabilities) == set("NAO~")
            assert sum(result.class_probabilities.values()) == pytest.approx(1.0, abs=1e-6)
            assert result.p_af == pytest.approx(result.class_probabilities["A"], abs=1e-6)
        batch = BatchDiagnosis(results=results)
        jsonschema.validate(batch.to_dict(), schema)
        batch.write_csv(tmp_path / "out.csv")
        assert [row[2] for row in csv.reader((tmp_path / "out.csv").open())][1:] == [outcome, outcome]
