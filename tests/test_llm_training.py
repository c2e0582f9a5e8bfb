"""Training on accelerate: two CPU processes (gloo) with synchronised gradients, falling loss, resumption."""

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecgllm.cli import main
from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.split import make_split
from ecgllm.examples import example_paths


def epoch_losses(log: Path) -> dict[int, float]:
    rows = list(csv.DictReader(log.open()))
    losses: dict[int, list[float]] = {}
    for row in rows:
        losses.setdefault(int(row["epoch"]), []).append(float(row["loss"]))
    return {epoch: sum(v) / len(v) for epoch, v in losses.items()}


def test_accelerate_two_cpu_processes_loss_falls(small_cinc, smoke_encoder, tmp_path):
    split = make_split(load_cinc_folder(small_cinc, progress=False).labels, "binary")
    split.save(tmp_path / "split.json")
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
               "-m", "ecgllm.cli", "-q", "llm", "train", "--data", str(small_cinc), "--split",
               str(tmp_path / "split.json"), "--encoder", str(smoke_encoder), "--out", str(tmp_path / "llm"),
               "--preset", "smoke", "--no-evaluate"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "x 2 process(es)" in done.stderr  # both ranks ran as one job, not two independent ones
    assert "saved weights verified against 2 process(es)" in done.stderr  # what rank 0 saved is every rank's
    losses = epoch_losses(tmp_path / "llm" / "train_log.csv")
    assert sorted(losses) == [1, 2, 3]
    assert losses[3] < losses[1] - 0.5, losses
    for epoch in (1, 2, 3):
        assert (tmp_path / "llm" / f"checkpoint_epoch_{epoch}" / "adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "llm" / "final" / "projector.safetensors").exists()

    # Evaluation shares the records between the two processes and gathers them back in order: the same figures and
    # answers as one process.
    evaluate = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", "-m", "ecgllm.cli",
                "-q", "llm", "evaluate", "--model", str(tmp_path / "llm" / "final"), "--data", str(small_cinc),
                "--split", str(tmp_path / "split.json"), "--out", str(tmp_path / "eval2")]
    done = subprocess.run(evaluate, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["-q", "llm", "evaluate", "--model", str(tmp_path / "llm" / "final"), "--data", str(small_cinc),
                 "--split", str(tmp_path / "split.json"), "--out", str(tmp_path / "eval1")]) == 0
    shared, alone = ([row for row in csv.DictReader((tmp_path / name / "predictions.csv").open())]
                     for name in ("eval2", "eval1"))
    assert [r["record"] for r in shared] == [r["record"] for r in alone] and len(alone) == 12  # the test split
    assert all(abs(float(a["log_odds"]) - float(b["log_odds"])) < 1e-3 for a, b in zip(shared, alone))
    assert [r["answer"] for r in shared] == [r["answer"] for r in alone]

    # Batch diagnosis likewise: the files shared between the processes, the rows (and a bad file's error) back in the
    # files' order.
    (tmp_path / "bad.csv").write_text("not,an\necg,at all\n")
    files = [str(p) for p in example_paths()] + [str(tmp_path / "bad.csv")]
    diagnose = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", "-m", "ecgllm.cli",
                "-q", "diagnose", "--model", str(tmp_path / "llm" / "final"), *files,
                "--csv", str(tmp_path / "diagnosed2.csv")]
    done = subprocess.run(diagnose, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["-q", "diagnose", "--model", str(tmp_path / "llm" / "final"), *files,
                 "--csv", str(tmp_path / "diagnosed1.csv")]) == 0
    shared, alone = (list(csv.DictReader((tmp_path / name).open())) for name in ("diagnosed2.csv", "diagnosed1.csv"))
    assert [(r["record"], r["error"]) for r in shared] == [(r["record"], r["error"]) for r in alone]
    assert len(alone) == len(files) and alone[-1]["error"] and not any(r["error"] for r in alone[:-1])
    assert all(abs(float(a["log_odds"]) - float(b["log_odds"])) < 1e-3 for a, b in zip(shared[:-1], alone[:-1]))
    assert [r["answer"] for r in shared] == [r["answer"] for r in alone]


def test_resume_from_last_epoch_continues_as_if_never_stopped(small_cinc, smoke_encoder, tmp_path, caplog):
    """A run stopped after epoch 1 of 2 and resumed ends with the same losses and weights as one that never stopped:
    the checkpoint carries the optimiser (keyed by parameter name), the schedule and every random state."""
    import shutil

    import torch
    from safetensors.torch import load_file

    split = make_split(load_cinc_folder(small_cinc, progress=False).labels, "binary")
    split.save(tmp_path / "split.json")
    args = ["-q", "llm", "train", "--data", str(small_cinc), "--split", str(tmp_path / "split.json"), "--encoder",
            str(smoke_encoder), "--cache", str(tmp_path / "cache"), "--preset", "smoke", "--no-evaluate",
            "--epochs", "2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main([*args, "--out", str(straight)]) == 0
    # What a run stopped during epoch 2 leaves: epoch 1's checkpoint and log.
    shutil.copytree(straight, resumed, ignore=shutil.ignore_patterns("checkpoint_epoch_2", "final"))
    log = (resumed / "train_log.csv").read_text().splitlines(keepends=True)
    (resumed / "train_log.csv").write_text("".join(line for line in log if not line.startswith("2,")))
    first = (resumed / "checkpoint_epoch_1" / "projector.safetensors").stat().st_mtime_ns
    caplog.clear()
    caplog.set_level(logging.INFO)
    assert main([*args, "--out", str(resumed)]) == 0
    assert "resuming after epoch 1" in caplog.text
    assert (resumed / "checkpoint_epoch_1" / "projector.safetensors").stat().st_mtime_ns == first
    losses = [[(r["epoch"], r["step"], r["loss"], r["lr"]) for r in csv.DictReader((run / "train_log.csv").open())]
              for run in (resumed, straight)]
    assert losses[0] == losses[1] and {row[0] for row in losses[0]} == {"1", "2"}
    for name in ("projector.safetensors", "adapter/adapter_model.safetensors"):
        a, b = (load_file(str(run / "final" / name)) for run in (resumed, straight))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_within_an_epoch_continues_as_if_never_stopped(small_cinc, smoke_encoder, tmp_path, monkeypatch,
                                                              caplog):
    """With a checkpoint every optimiser step (2 micro-batches) and oversampled draws (as the cpu preset trains, the
    loader's base seed then comes from the global random state) a run stopped in the middle of epoch 2 resumes from the
    latest one, draws that epoch's batches again, skips the ones it trained on and ends with the losses and weights of
    a run that never stopped; the log rows written after that checkpoint are written again, not twice, and the
    superseded within-epoch checkpoints are gone."""
    import torch
    from safetensors.torch import load_file

    from ecgllm.llm.modeling_ecgllm import ECGLLM

    split = make_split(load_cinc_folder(small_cinc, progress=False).labels, "binary")
    split.save(tmp_path / "split.json")
    args = ["-q", "llm", "train", "--data", str(small_cinc), "--split", str(tmp_path / "split.json"), "--encoder",
            str(smoke_encoder), "--cache", str(tmp_path / "cache"), "--preset", "smoke", "--no-evaluate",
            "--epochs", "2", "--gradient-accumulation-steps", "2", "--save-every", "1", "--balance", "oversample"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main([*args, "--out", str(straight)]) == 0
    assert sorted(p.name for p in straight.glob("checkpoint_*")) == ["checkpoint_epoch_1", "checkpoint_epoch_2"]

    forward, calls = ECGLLM.forward, []  # 6 micro-batches an epoch: stop at the last of epoch 2, after step 2's save

    def stop_at_twelfth(self, *a, **k):
        calls.append(1)
        if len(calls) == 12:
            raise KeyboardInterrupt
        return forward(self, *a, **k)

    monkeypatch.setattr(ECGLLM, "forward", stop_at_twelfth)
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--out", str(resumed)])
    monkeypatch.setattr(ECGLLM, "forward", forward)
    assert sorted(p.name for p in resumed.glob("checkpoint_*")) == ["checkpoint_epoch_1", "checkpoint_epoch_2_step_2"]
    assert sum(line.startswith("2,") for line in (resumed / "train_log.csv").open()) == 5

    caplog.set_level(logging.INFO)
    assert main([*args, "--out", str(resumed)]) == 0
    assert "resuming at step 2 of epoch 2" in caplog.text
    assert sorted(p.name for p in resumed.glob("checkpoint_*")) == ["checkpoint_epoch_1", "checkpoint_epoch_2"]
    logs = [list(csv.DictReader((run / "train_log.csv").open())) for run in (resumed, straight)]
    losses = [[(r["epoch"], r["micro_step"], r["loss"], r["lr"]) for r in log] for log in logs]
    assert losses[0] == losses[1] and len(losses[0]) == 12
    for name in ("projector.safetensors", "adapter/adapter_model.safetensors"):
        a, b = (load_file(str(run / "final" / name)) for run in (resumed, straight))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_depends_on_seed_not_on_cache_state(small_cinc, smoke_encoder, tmp_path, monkeypatch):
    """A cold start (backbone built on first use, features computed) and a warm one (both cached, the random state
    disturbed before) give the same initial weights, the same losses and the same trained weights."""
    import dataclasses

    import torch
    from safetensors.torch import load_file

    from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
    from ecgllm.llm.training import train_llm

    monkeypatch.setenv("ECGLLM_CACHE", str(tmp_path / "backbones"))  # empty: tiny-qwen3 is built inside training
    dataset = load_cinc_folder(small_cinc, progress=False)
    split = make_split(dataset.labels, "binary")
    model_config, train_config, _ = LLM_PRESETS["smoke"]
    train_config = dataclasses.replace(train_config, epochs=1, seed=5)
    runs = []
    for name in ("cold", "warm"):
        torch.manual_seed(1234)
        torch.rand(1000)
        out = tmp_path / name
        final = train_llm(dataset, split, smoke_encoder, out, model_config, train_config, tmp_path / "features",
                          progress=False)
        log = [row["loss"] for row in csv.DictReader((out / "train_log.csv").open())]
        weights = {**load_file(str(final / "projector.safetensors")),
                   **load_file(str(final / "adapter" / "adapter_model.safetensors"))}
        runs.append((log, weights))
    (cold_log, cold), (warm_log, warm) = runs
    assert cold_log == warm_log and len(cold_log) >= 3
    assert cold.keys() == warm.keys()
    assert all(torch.equal(cold[k], warm[k]) for k in cold)


@pytest.mark.parametrize("task", ["binary", "four"])
def test_cross_fitted_verdicts_come_from_encoders_that_never_saw_the_record(task, request, tmp_path):
    """With verdict_folds K, training fits K fold encoders (each without its fold) beside the run's encoder, which
    stays untouched, and each training record's verdict input is the AF logit (four classes: the class logits) of the
    encoder that never saw it."""
    import dataclasses
    import shutil

    import torch

    from ecgllm.data.split import Split
    from ecgllm.encoder.modeling_mscnn import MSCNN
    from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
    from ecgllm.llm.cross_fit import FOLDS_DIR, cross_fitted_verdicts, fold_of_training_records
    from ecgllm.llm.data import prepare_examples
    from ecgllm.llm.ecg_tokens import encode_records
    from ecgllm.llm.modeling_ecgllm import ECGLLM, VERDICT_SCALE, encoder_fingerprint, head_logit
    from ecgllm.llm.training import train_llm

    encoder_dir = tmp_path / "encoder"
    if task == "binary":
        data_dir = request.getfixturevalue("small_cinc")
        shutil.copytree(request.getfixturevalue("smoke_encoder"), encoder_dir)
        dataset = load_cinc_folder(data_dir, progress=False)
        split = make_split(dataset.labels, "binary")
    else:  # the trained four-class encoder of a smoke run, and its split
        run = request.getfixturevalue("four_class_run")
        shutil.copytree(run / "encoder", encoder_dir)
        dataset = load_cinc_folder(request.getfixturevalue("small_cinc_four"), task="four", progress=False)
        split = Split.load(run / "split.json")
    fingerprint = encoder_fingerprint(encoder_dir)
    model_config, train_config, _ = LLM_PRESETS["smoke"]
    train_config = dataclasses.replace(train_config, epochs=1, verdict_folds=2)
    final = train_llm(dataset, split, encoder_dir, tmp_path / "llm", model_config, train_config, tmp_path / "cache",
                      progress=False)
    assert encoder_fingerprint(encoder_dir) == fingerprint  # the run's encoder is not retrained
    folds = [encoder_dir / FOLDS_DIR / f"fold_{k}" for k in (0, 1)]
    assert all((f / "model.safetensors").exists() for f in folds)

    model = ECGLLM.from_pretrained(final)
    assert model.config.task == task
    verdicts = cross_fitted_verdicts(dataset, split, encoder_dir, 2, model.config.ecg_tokens, model.config.ecg_input,
                                     tmp_path / "cache", progress=False)  # read back, not retrained
    assert set(verdicts) == set(split.train)
    width = model.encoder.config.num_outputs  # 1 or 4 verdict columns
    assignment = fold_of_training_records(split, 2, 42)  # folds seeded as the encoder was trained: seed 42 in both
    for k, folder in enumerate(folds):
        held = [i for i in split.train if assignment[i] == k]
        fold_encoder = MSCNN.from_pretrained(folder)
        tokens = encode_records(fold_encoder, dataset.signals(held, fold_encoder.config.preprocess.fs),
                                model.config.ecg_tokens, model.config.ecg_input)
        torch.testing.assert_close(torch.tensor([verdicts[i] for i in held]), head_logit(fold_encoder, tokens),
                                   atol=1e-4, rtol=1e-4)
    crossed = prepare_examples(model, dataset, split.train, tmp_path / "cache", False, verdicts)
    own = prepare_examples(model, dataset, split.train, tmp_path / "cache", False)
    for c, o in zip(crossed, own):
        torch.testing.assert_close(c.features[0, -width:], torch.tensor(verdicts[c.record]).reshape(-1) / VERDICT_SCALE,
                                   atol=1e-5, rtol=0)
        assert torch.equal(c.features[..., :-width], o.features[..., :-width])  # only the verdict columns differ
    assert any((c.features[0, -width:] - o.features[0, -width:]).abs().max() > 1e-3 for c, o in zip(crossed, own))


def test_a_within_epoch_checkpoint_resumes_only_on_as_many_processes(tmp_path):
    """Each process skips its own share of the resumed epoch's batches, so a checkpoint saved within an epoch by two
    processes is refused on one, naming the folder (an epoch's own checkpoint resumes on any number)."""
    from types import SimpleNamespace

    import torch

    from ecgllm.errors import SettingError
    from ecgllm.llm.training import STATE_NAME, last_checkpoint, restore_training_state

    for name in ("checkpoint_epoch_1", "checkpoint_epoch_2_step_3", "checkpoint_epoch_2_step_12"):
        (tmp_path / name).mkdir()
        torch.save({"processes": 2}, tmp_path / name / STATE_NAME)
    (tmp_path / "checkpoint_epoch_2").mkdir()  # being written when the run stopped: no training state yet
    done, steps, folder = last_checkpoint(tmp_path)
    assert (done, steps, folder.name) == (1, 12, "checkpoint_epoch_2_step_12")
    one_process = SimpleNamespace(num_processes=1)
    with pytest.raises(SettingError, match=f"{folder}: saved within an epoch by 2 process"):
        restore_training_state(one_process, None, None, None, [], folder, steps)
