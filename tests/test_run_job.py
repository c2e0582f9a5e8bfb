"""The main job (`ecgllm run`) end to end on real records with the smoke preset, and its resumption."""

import csv
import json

import numpy as np
import torch

from ecgllm.cli import main
from ecgllm.data.split import Split
from ecgllm.encoder import MSCNN
from ecgllm.rhythm import RhythmEvidence


def test_run_smoke_end_to_end_and_resume(smoke_run, small_cinc):
    run = smoke_run
    assert json.loads((run / "run.json").read_text())["data"] == str(small_cinc.resolve())
    split = Split.load(run / "split.json")
    assert len(split.train) + len(split.val) + len(split.test) == 80
    encoder = MSCNN.from_pretrained(run / "encoder")
    assert encoder.config.preset == "smoke"
    assert set(encoder.config.thresholds) == {"center", "whole"}
    assert all(0 < t < 1 for t in encoder.config.thresholds.values())
    history = (run / "encoder" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 2  # header + 2 epochs
    for stage in ("encoder", "llm"):  # the host each model was trained on, beside its training config
        host = json.loads((run / stage / "host.json").read_text())
        assert host["torch"] == torch.__version__ and host["threads"] == torch.get_num_threads()
    metrics = json.loads((run / "encoder" / "eval" / "metrics.json").read_text())
    for mode in ("center", "whole"):
        result = metrics["modes"][mode]
        assert result["n_records"] == len(split.test)
        assert result["threshold"] == encoder.config.thresholds[mode]
        assert 0 <= result["metrics"]["roc_auc"] <= 1
    predictions = (run / "encoder" / "eval" / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "record,label,p_af_center,p_af_whole" and len(predictions) == 1 + len(split.test)
    assert "whole record" in (run / "encoder" / "eval" / "metrics.txt").read_text()

    weights = run / "encoder" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert main(["-q", "run", "--data", str(small_cinc), "--out", str(run), "--preset", "smoke", "--task",
                 "binary"]) == 0
    assert weights.stat().st_mtime_ns == stamp  # resumed, not retrained
    assert main(["-q", "run", "--data", str(small_cinc), "--out", str(run), "--preset", "smoke"]) == 2  # four-class
    assert weights.stat().st_mtime_ns == stamp


def test_the_host_record_names_a_capped_instruction_set(monkeypatch):
    from ecgllm.utils import ISA_VARIABLES, VECTOR_FLAGS, describe_host

    for name in ISA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    host = describe_host()
    assert host["isa_limits"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"} and host["cpu"]["model"]
    assert set(host["cpu"]["vector_flags"]) <= set(VECTOR_FLAGS)


def test_encoder_cli_train_and_evaluate(small_cinc, tmp_path, capsys):
    assert main(["-q", "data", "split", str(small_cinc), "--out", str(tmp_path / "split.json")]) == 0
    assert main(["-q", "encoder", "train", "--data", str(small_cinc), "--split", str(tmp_path / "split.json"),
                 "--out", str(tmp_path / "enc"), "--preset", "smoke", "--epochs", "1", "--k-size-stream2", "5"]) == 0
    assert MSCNN.from_pretrained(tmp_path / "enc").config.k_size_stream2 == 5
    assert main(["-q", "encoder", "evaluate", "--model", str(tmp_path / "enc"), "--data", str(small_cinc),
                 "--split", str(tmp_path / "split.json"), "--split-name", "val"]) == 0
    assert "centre crop" in capsys.readouterr().out
    # Not where a run reads its encoder's test figures back.
    assert json.loads((tmp_path / "enc" / "eval_val" / "metrics.json").read_text())["split"] == "val"
    assert not (tmp_path / "enc" / "eval").exists()


def test_encoder_trains_and_evaluates_four_classes_from_a_four_class_split(four_class_run):
    config = MSCNN.from_pretrained(four_class_run / "encoder").config
    assert config.task == "four" and config.num_outputs == 4
    assert set(config.class_offsets) == {"center", "whole"} and all(len(v) == 4 for v in config.class_offsets.values())
    assert "challenge_score" in (four_class_run / "encoder" / "eval" / "metrics.txt").read_text()
    result = json.loads((four_class_run / "encoder" / "eval" / "metrics.json").read_text())["modes"]["whole"]
    split = Split.load(four_class_run / "split.json")
    assert result["class_counts"] == {c: sum(split.labels[i] == k for i in split.test) for k, c in enumerate("NAO~")}
    assert min(result["class_counts"].values()) >= 2
    assert sum(map(sum, result["confusion_matrix"]["counts"])) == len(split.test)
    header = (four_class_run / "encoder" / "eval" / "predictions.csv").read_text().splitlines()[0]
    assert header.startswith("record,label,p_N_center,p_A_center,p_O_center,p_~_center")
    # The smoke preset checks the offsets on 10 pairs of validation halves; evaluation reports what the check found.
    for mode, check in config.class_offset_checks.items():
        assert check["repeats"] == 10 and check["kept"] == (check["held_out_gain"] > 0)
        assert check["kept"] or not any(config.class_offsets[mode])
    assert result["offset_check"] == config.class_offset_checks["whole"]


def test_encoder_calibrate_chooses_the_rule_again_into_a_copy(four_class_run, small_cinc_four, tmp_path, capsys):
    """An encoder's decision rule chosen again on validation (here unchecked, --offset-check-repeats 0) into another
    folder: the weights are the same and the original, which the run's ECG-LLM knows by its config, is untouched."""
    original = four_class_run / "encoder"
    before = (original / "config.json").read_text()
    command = ["-q", "encoder", "calibrate", "--model", str(original), "--data", str(small_cinc_four), "--split",
               str(four_class_run / "split.json"), "--offset-check-repeats", "0"]
    assert main([*command, "--out", str(tmp_path / "calibrated")]) == 0
    calibrated = MSCNN.from_pretrained(tmp_path / "calibrated")
    assert (original / "config.json").read_text() == before
    assert (tmp_path / "calibrated" / "model.safetensors").read_bytes() == (original / "model.safetensors").read_bytes()
    assert (tmp_path / "calibrated" / "training_config.json").exists()
    assert {mode: (c["repeats"], c["kept"], c["held_out_gain"]) for mode, c in
            calibrated.config.class_offset_checks.items()} == {"center": (0, True, None), "whole": (0, True, None)}
    assert main([*command, "--out", str(original)]) == 2
    assert "beside the original, not over it" in capsys.readouterr().err


def test_llm_trains_and_evaluates_four_classes_against_the_four_class_encoder(four_class_run):
    assert json.loads((four_class_run / "run.json").read_text())["task"] == "four"
    final = four_class_run / "llm" / "final"
    assert json.loads((final / "config.json").read_text())["task"] == "four"
    # The four-class task's decision tokens weigh more in the loss (chosen on validation); the config says so.
    assert json.loads((four_class_run / "llm" / "training_config.json").read_text())["decision_weight"] == 10.0
    metrics = json.loads((four_class_run / "llm" / "eval" / "metrics.json").read_text())
    assert metrics["task"] == "four" and set(metrics["comparison_with_task1"]) == {"center", "whole"}
    calibration = json.loads((final / "calibration.json").read_text())
    assert calibration["class_offsets"] == metrics["validation"]["offsets"] and len(calibration["class_offsets"]) == 4
    assert "challenge score maximised" in calibration["chosen_on"]
    # The smoke preset checks its offsets on 10 pairs of validation halves and says what the check found.
    check = metrics["validation"]["offset_check"]
    assert check["repeats"] == 10 and isinstance(check["held_out_gain"], float)
    assert check["kept"] == (check["held_out_gain"] > 0)
    assert check["kept"] or not any(calibration["class_offsets"])
    assert "held-out halves" in calibration["chosen_on"]
    assert "vs the four-class MS-CNN (whole)" in (four_class_run / "llm" / "eval" / "metrics.txt").read_text()
    rows = list(csv.DictReader((four_class_run / "llm" / "eval" / "predictions.csv").open()))
    assert rows and all(row["answer"].startswith("经过分析") for row in rows)
    assert {int(row["decision"]) for row in rows} <= {0, 1, 2, 3}
    probabilities = np.exp([[float(row[f"log_p_{c}"]) for c in "NAO~"] for row in rows])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-6)


def test_report_of_a_four_class_run(four_class_run):
    assert main(["-q", "report", str(four_class_run)]) == 0
    page = (four_class_run / "report.html").read_text()
    assert "challenge score" in page and 'id="confusion-ECG-LLM"' in page


def test_run_includes_llm_stage(smoke_run):
    run = smoke_run
    assert json.loads((run / "llm" / "training_config.json").read_text())["decision_weight"] == 1.0  # binary: as was
    metrics = json.loads((run / "llm" / "eval" / "metrics.json").read_text())
    scoring = metrics["scoring"]
    assert scoring["n_records"] == 12 and 0 <= scoring["metrics"]["roc_auc"] <= 1
    generation = metrics["generation"]
    assert generation["n"] == 12 and 0 <= generation["unparseable"] <= 12
    assert 0 <= generation["numbers_grounded"] <= 1 and 0 <= generation["regularity_grounded"] <= 1
    comparison = metrics["comparison_with_task1"]
    assert set(comparison) == {"center", "whole"} and "p_value" in comparison["whole"]["mcnemar"]
    calibration = json.loads((run / "llm" / "final" / "calibration.json").read_text())
    assert calibration["log_odds"] == scoring["threshold"] and metrics["score"] == "log-odds"
    assert "vs Task 1 MS-CNN" in (run / "llm" / "eval" / "metrics.txt").read_text()
    # How often the decision and the measured RR regularity part ways, recounted from the predictions and figures.
    disagreement = metrics["decision_vs_measured_rhythm"]
    rhythm = json.loads((run / "cache" / "rhythm.json").read_text())
    predictions = list(csv.DictReader((run / "llm" / "eval" / "predictions.csv").open()))
    regularity = {p["record"]: RhythmEvidence(**rhythm[p["record"]]["evidence"]).regularity for p in predictions}
    assert disagreement["n"] == 12 and disagreement["af_with_regular_rr"] == sum(
        p["decision"] == "1" and regularity[p["record"]] == "regular" for p in predictions)
    assert disagreement["no_af_with_irregular_rr"] == sum(
        p["decision"] == "0" and regularity[p["record"]] == "irregular" for p in predictions)
    # The threshold is traceable to the validation scores it was chosen on, which are not test records.
    validation = metrics["validation"]
    assert validation["threshold"] == scoring["threshold"]
    rows = (run / "llm" / "eval" / "validation_predictions.csv").read_text().splitlines()
    split = json.loads((run / "split.json").read_text())
    assert rows[0] == "record,label,log_odds,p_af" and len(rows) - 1 == validation["n_records"]
    assert {r.split(",")[0] for r in rows[1:]} <= set(split["val"])
