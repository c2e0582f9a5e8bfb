"""FSDP (FULL_SHARD) training through `accelerate launch`, checked on a GPU: the checkpoints hold the trained weights,
a run stopped after epoch 1 resumes to the same end as one that never stopped, and the saved model loads and scores
without FSDP.

    python benchmarks/fsdp_check.py --data CINC_SUBSET --out /tmp/fsdp [--fsdp-version 1 2] [--processes 1]

accelerate refuses FSDP without an accelerator, so this runs on a lent GPU machine (`bash scripts/gpu_check.sh
--fsdp`); the same code path under DDP is tested on CPU (tests/test_llm_training.py). The model is Qwen3-8B's exact
width with --layers decoder layers (random weights) and the `qwen3-8b` preset's LoRA. Per FSDP version it records
whether each step ran (with the error's last lines when not), the epoch losses of the uninterrupted and the resumed
run, the largest difference between their final weights, and the test records' log-odds from the saved model.
"""

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

CLI = [sys.executable, "-m", "ecgllm.cli", "-q"]
SAVED = ("projector.safetensors", "adapter/adapter_model.safetensors")


def fsdp_launcher(version: int, processes: int) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no", "--main_process_port", "0",
            "--use_fsdp", "--fsdp_version", str(version), "--fsdp_sharding_strategy", "FULL_SHARD",
            "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
            "--fsdp_transformer_layer_cls_to_wrap", "Qwen3DecoderLayer", "--fsdp_use_orig_params", "true",
            "--fsdp_state_dict_type", "FULL_STATE_DICT",
            # Every process builds the whole model on its GPU (no meta-device loading from rank 0).
            "--fsdp_cpu_ram_efficient_loading", "false", "-m", "ecgllm.cli", "-q"]


def step(name: str, command: list[str], record: dict, write) -> bool:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    record[name] = {"ok": done.returncode == 0, "seconds": round(time.perf_counter() - started, 1)}
    if done.returncode != 0:
        launcher_trailer = done.stderr.find("failed (exitcode")  # torch's launcher repeats nothing useful after it
        record[name]["error"] = done.stderr[:launcher_trailer if launcher_trailer > 0 else None][-3000:]
    else:
        record[name]["log"] = [line for line in done.stderr.splitlines() if "ecgllm" in line][-6:]
    print(name, json.dumps(record[name])[:3000], flush=True)
    write()  # a run stopped by its time limit keeps what it measured
    return done.returncode == 0


def losses(folder: Path) -> list[list]:
    return [[int(r["epoch"]), int(r["micro_step"]), float(r["loss"])]
            for r in csv.DictReader((folder / "train_log.csv").open())]


def largest_difference(a: Path, b: Path) -> float:
    worst = 0.0
    for name in SAVED:
        x, y = load_file(str(a / "final" / name)), load_file(str(b / "final" / name))
        if x.keys() != y.keys():
            return float("inf")
        worst = max([worst] + [(x[k].float() - y[k].float()).abs().max().item() for k in x])
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fsdp-version", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=32, help="training draws per epoch")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "fsdp_check_cuda.json")
    args = parser.parse_args()

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    report = {"command": "python " + " ".join(sys.argv), "machine": platform.node(),
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
              "torch": torch.__version__, "processes": args.processes, "layers": args.layers, "runs": {}}

    def write() -> None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(report, indent=2))

    setup: dict = {}
    report["setup"] = setup
    ok = step("split", [*CLI, "data", "split", str(args.data), "--out", str(out / "split.json")], setup, write) and \
        step("encoder", [*CLI, "encoder", "train", "--data", str(args.data), "--split", str(out / "split.json"),
                         "--out", str(out / "encoder"), "--preset", "smoke", "--epochs", "1"], setup, write)
    write()
    if not ok:
        return
    train = ["llm", "train", "--data", str(args.data), "--split", str(out / "split.json"), "--encoder",
             str(out / "encoder"), "--cache", str(out / "cache"), "--preset", "qwen3-8b",
             "--lm", f"qwen3-8b-random:{args.layers}", "--epochs", "2", "--samples-per-epoch", str(args.samples),
             "--batch-size", "4", "--gradient-accumulation-steps", "2", "--no-evaluate"]
    for version in args.fsdp_version:
        record: dict = {}
        report["runs"][f"fsdp{version}"] = record
        straight, resumed = out / f"fsdp{version}_straight", out / f"fsdp{version}_resumed"
        launcher = fsdp_launcher(version, args.processes)
        for folder in (straight, resumed):  # this check's own folders: a fresh start, never a resumption
            shutil.rmtree(folder, ignore_errors=True)
        if step("train", [*launcher, *train, "--out", str(straight)], record, write):
            record["losses"] = losses(straight)
            # What a run stopped during epoch 2 leaves behind: epoch 1's checkpoint and log rows.
            shutil.copytree(straight, resumed, ignore=shutil.ignore_patterns("checkpoint_epoch_2", "final"))
            log = (straight / "train_log.csv").read_text().splitlines(keepends=True)
            (resumed / "train_log.csv").write_text("".join(row for row in log if not row.startswith("2,")))
            if step("resume", [*launcher, *train, "--out", str(resumed)], record, write):
                record["resumed_losses"] = losses(resumed)
                record["resumed_vs_straight_max_weight_difference"] = largest_difference(resumed, straight)
            # The saved model without FSDP: one process loads it and scores the test records (the first version only).
            evaluate = [*CLI, "llm", "evaluate", "--model", str(straight / "final"), "--data", str(args.data),
                        "--split", str(out / "split.json"), "--out", str(straight / "eval"), "--no-generate"]
            if version == args.fsdp_version[0] and step("evaluate", evaluate, record, write):
                metrics = json.loads((straight / "eval" / "metrics.json").read_text())
                record["test_metrics"] = {k: metrics["scoring"]["metrics"].get(k) for k in ("roc_auc", "f1")}
        write()
    print(json.dumps(report, indent=2)[:6000])


if __name__ == "__main__":
    main()
