"""Training on accelerate: two CPU processes (gloo) with synchronised gradients, falling loss, resumption."""

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

from ecgllm.cli import main
from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.split import make_split


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
    losses = epoch_losses(tmp_path / "llm" / "train_log.csv")
    assert sorted(losses) == [1, 2, 3]
    assert losses[3] < losses[1] - 0.5, losses
    for epoch in (1, 2, 3):
        assert (tmp_path / "llm" / f"checkpoint_epoch_{epoch}" / "adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "llm" / "final" / "projector.safetensors").exists()


def test_resume_from_last_epoch(small_cinc, smoke_encoder, tmp_path, caplog):
    split = make_split(load_cinc_folder(small_cinc, progress=False).labels, "binary")
    split.save(tmp_path / "split.json")
    args = ["-q", "llm", "train", "--data", str(small_cinc), "--split", str(tmp_path / "split.json"),
            "--encoder", str(smoke_encoder), "--out", str(tmp_path / "llm"), "--preset", "smoke", "--no-evaluate"]
    assert main([*args, "--epochs", "1"]) == 0
    first = (tmp_path / "llm" / "checkpoint_epoch_1" / "projector.safetensors").stat().st_mtime_ns
    caplog.clear()
    caplog.set_level(logging.INFO)
    assert main([*args, "--epochs", "2"]) == 0
    assert "resuming after epoch 1" in caplog.text
    assert (tmp_path / "llm" / "checkpoint_epoch_1" / "projector.safetensors").stat().st_mtime_ns == first
    assert sorted(epoch_losses(tmp_path / "llm" / "train_log.csv")) == [1, 2]
