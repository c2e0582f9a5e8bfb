"""Stopped trainings resume where they stopped and end where uninterrupted ones do, at real scale.

On a finished run (its split, encoder, cache and LLM): the run's LLM is trained again with the run's preset and seed,
killed (SIGKILL, as the end of a session kills it) within its epoch some time after a within-epoch checkpoint, and run
again; its final weights and training log are compared with the run's own LLM's. Then the run's encoder settings are
trained for a few epochs twice, once straight and once killed during epoch 3 and run again. Prints the findings and
writes them to a JSON file.

    python benchmarks/resume_check.py --run runs/four75_seeds/seed_9 --data ../shared/data/cinc2017/training2017
"""

import argparse
import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from ecgllm.encoder.training import CHECKPOINT_NAME, HISTORY_NAME
from ecgllm.llm.configuration_ecgllm import llm_training_preset
from ecgllm.llm.modeling_ecgllm import ADAPTER_DIR, PROJECTOR_NAME
from ecgllm.llm.training import LOG_NAME, last_checkpoint
from ecgllm.modeling_utils import CONFIG_NAME, WEIGHTS_NAME

ECGLLM = [sys.executable, "-m", "ecgllm.cli", "-q"]  # no progress bars in the logs
LLM_FILES = (PROJECTOR_NAME, f"{ADAPTER_DIR}/adapter_model.safetensors")
TIMING = ("seconds", "samples_per_s")  # the only columns of a training log that may differ


def compare_weights(a: Path, b: Path) -> dict:
    """Tensors of two safetensors files: how many, whether every one is equal, the largest difference."""
    x, y = load_file(str(a)), load_file(str(b))
    if x.keys() != y.keys():
        return {"tensors": len(x), "identical": False, "error": "different tensor names"}
    largest = max(float((x[k].double() - y[k].double()).abs().max()) for k in x)
    return {"tensors": len(x), "identical": all(torch.equal(x[k], y[k]) for k in x), "largest_difference": largest}


def same_log(a: Path, b: Path) -> bool:
    """Two training logs agree in every row and column but the timings."""
    x, y = ([{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f.open())] for f in (a, b))
    return x == y


def kill_when(command: list[str], log: Path, ready, linger: float) -> dict:
    """Starts `command` and kills it `linger` seconds after `ready()` first holds; returns its return code."""
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        while not ready():
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} ended (rc {process.returncode}) before it could be stopped; "
                                   f"see {log}")
            time.sleep(2)
        time.sleep(linger)
        process.send_signal(signal.SIGKILL)
        process.wait()
    return {"returncode": process.returncode}


def run(command: list[str], log: Path) -> None:
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed (rc {done.returncode}); see {log}")


def resumed_line(log: Path) -> str | None:
    return next((line.split(": ", 1)[-1].strip() for line in log.read_text().splitlines() if "resuming" in line), None)


def check_llm(run_dir: Path, data: str, manifest: dict, work: Path, checkpoints: int, linger: float) -> dict:
    out = work / "llm"
    command = [*ECGLLM, "llm", "train", "--data", data, "--split", str(run_dir / "split.json"), "--encoder",
               str(run_dir / "encoder"), "--cache", str(run_dir / "cache"), "--preset", manifest["preset"], "--seed",
               str(manifest["seed"]), "--no-evaluate", "--out", str(out)]
    save_every = llm_training_preset(manifest["preset"], manifest["task"]).save_every
    started = time.perf_counter()

    def ready() -> bool:  # that many within-epoch checkpoints into epoch 1
        return last_checkpoint(out)[1] >= checkpoints * save_every

    killed = kill_when(command, work / "llm_first.log", ready, linger)
    rows = list(csv.DictReader((out / LOG_NAME).open()))
    killed.update(left=sorted(p.name for p in out.glob("checkpoint_*")), last_logged_step=int(rows[-1]["step"]))
    run(command, work / "llm_resumed.log")
    return {"command": "ecgllm " + " ".join(command[3:]), "save_every": save_every, "killed": killed,
            "resumed": resumed_line(work / "llm_resumed.log"),
            "left_after": sorted(p.name for p in out.glob("checkpoint_*")),
            "against": str(run_dir / "llm" / "final"),
            "weights": {name: compare_weights(out / "final" / name, run_dir / "llm" / "final" / name)
                        for name in LLM_FILES},
            "same_log_but_timings": same_log(out / LOG_NAME, run_dir / "llm" / LOG_NAME),
            "wall_seconds": round(time.perf_counter() - started)}


def check_encoder(run_dir: Path, data: str, manifest: dict, work: Path, epochs: int, linger: float) -> dict:
    command = [*ECGLLM, "encoder", "train", "--data", data, "--split", str(run_dir / "split.json"), "--preset",
               manifest["preset"], "--seed", str(manifest["seed"]), "--epochs", str(epochs), "--patience",
               str(epochs)]
    straight, stopped = work / "encoder_straight", work / "encoder_stopped"
    started = time.perf_counter()
    run([*command, "--out", str(straight)], work / "encoder_straight.log")

    def two_epochs_done() -> bool:
        history = stopped / HISTORY_NAME
        return history.exists() and len(history.read_text().splitlines()) >= 3

    killed = kill_when([*command, "--out", str(stopped)], work / "encoder_first.log", two_epochs_done, linger)
    killed["epochs_in_history"] = len((stopped / HISTORY_NAME).read_text().splitlines()) - 1
    run([*command, "--out", str(stopped)], work / "encoder_resumed.log")
    return {"command": "ecgllm " + " ".join(command[3:]), "epochs": epochs, "killed": killed,
            "resumed": resumed_line(work / "encoder_resumed.log"),
            "weights": compare_weights(stopped / WEIGHTS_NAME, straight / WEIGHTS_NAME),
            "same_decision_rule": json.loads((stopped / CONFIG_NAME).read_text())
            == json.loads((straight / CONFIG_NAME).read_text()),
            "same_history_but_timings": same_log(stopped / HISTORY_NAME, straight / HISTORY_NAME),
            "checkpoint_left": (stopped / CHECKPOINT_NAME).exists(),
            "wall_seconds": round(time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished four-class run folder (split, encoder, cache, llm)")
    parser.add_argument("--data", required=True, help="the CinC 2017 training folder the run was trained on")
    parser.add_argument("--work", default="/tmp/resume_check", help="scratch folder (emptied first)")
    parser.add_argument("--checkpoints", type=int, default=3, help="kill the LLM after this many within-epoch "
                                                                   "checkpoints")
    parser.add_argument("--linger", type=float, default=60, help="seconds between that checkpoint and the kill")
    parser.add_argument("--encoder-epochs", type=int, default=4)
    parser.add_argument("--results", default="benchmarks/results/resume_check.json")
    args = parser.parse_args()
    run_dir, work = Path(args.run), Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    manifest = json.loads((run_dir / "run.json").read_text())
    results = {"command": " ".join(sys.argv), "run": str(run_dir),
               "llm": check_llm(run_dir, args.data, manifest, work, args.checkpoints, args.linger),
               "encoder": check_encoder(run_dir, args.data, manifest, work, args.encoder_epochs, args.linger / 3)}
    print(json.dumps(results, indent=2))
    Path(args.results).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
