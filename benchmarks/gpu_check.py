"""The production path on one device, measured: Qwen3-8B's exact shape (random weights) with the `qwen3-8b` preset.

    python benchmarks/gpu_check.py --data CINC_SUBSET --out runs/gpu_check                 # one GPU, 36 layers
    python benchmarks/gpu_check.py --data CINC_SUBSET --out OUT --layers 2 --device cpu --steps 2 \\
        --batch-size 1 --accumulation 1 --records 2 --diagnose 1 --max-new-tokens 4      # reduced, on a CPU (tested)

On a lent GPU machine without network, `bash scripts/gpu_check.sh` installs what it lacks from .gpu/ (made here by
`bash scripts/gpu_bundle.sh DATA`) and runs this.

Every stage is the project's own function, on --device: MS-CNN training (one short epoch, `train_encoder`), LLM
training (`train_llm`, which also caches the encoder features) for --steps optimiser steps of batch x accumulation
records, without and with gradient checkpointing; evaluation (`predict`: scoring, then scoring + generation) of
--records records; `diagnose` of --diagnose recordings of 30 s, one at a time and as one batch. A forward hook checks
that every module's tensor inputs sit on the device, and every model's parameters are checked after each stage.

Figures (one JSON, rewritten after every stage so that a stopped run keeps what it measured):
- training samples/s and tokens/s in steady state (from train_log.csv, after the first optimiser steps), the
  estimated time of one epoch of 4340 records, peak memory (CUDA: max allocated; CPU: the process's peak RSS);
- model FLOP utilisation = tokens/s x FLOP per token / peak, with FLOP per token = 4 x N_layers (forward 2N,
  backward through the frozen weights' activations 2N; LoRA's own weight gradients are negligible) + 4 x V x H x
  (answer tokens / tokens) for the LM head, which only the answer positions pass; attention's T-dependent FLOPs
  (~2 % at 200 tokens) and the recomputation under gradient checkpointing are not counted (model FLOPs);
- scoring and scoring + generation records/s, the estimated time to score and answer 869 test records (random
  weights never stop early: every answer runs to max_new_tokens, the worst case), and diagnose seconds per 30-s
  record.
"""

import argparse
import csv
import dataclasses
import gc
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.split import make_split
from ecgllm.encoder.configuration_mscnn import ENCODER_PRESETS, TRAINING_PRESETS
from ecgllm.encoder.training import train_encoder
from ecgllm.inference.diagnose import Diagnoser
from ecgllm.llm.backbones import QWEN3_8B, QWEN3_8B_RANDOM, resolve_dtype
from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
from ecgllm.llm.data import prepare_examples
from ecgllm.llm.evaluate import predict
from ecgllm.llm.modeling_ecgllm import ECGLLM
from ecgllm.llm.training import LOG_NAME, train_llm
from ecgllm.runs.layout import load_model
from ecgllm.utils import resolve_device

EPOCH_RECORDS = 4340  # the binary split's training records
TEST_RECORDS = 869
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense bf16, SXM


class DeviceGuard:
    """A global forward pre-hook: every module's positional tensor inputs must sit on the device."""

    def __init__(self, device: torch.device):
        self.device, self.checked, self.misplaced = device, 0, []
        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(self)

    def __call__(self, module, inputs):
        for tensor in inputs:
            if isinstance(tensor, torch.Tensor):
                self.checked += 1
                if tensor.device.type != self.device.type and len(self.misplaced) < 10:
                    self.misplaced.append(f"{type(module).__name__}: input on {tensor.device}")


def parameters_on(model: torch.nn.Module, device: torch.device) -> bool:
    return all(p.device.type == device.type for p in model.parameters())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GiB


def flop_per_token(layers: int, answer_share: float) -> float:
    c = QWEN3_8B
    hidden, heads, kv, head_dim = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    per_layer = hidden * head_dim * (2 * heads + 2 * kv) + 3 * hidden * c["intermediate_size"]
    return 4 * layers * per_layer + 4 * c["vocab_size"] * hidden * answer_share


def steady_rate(log_path: Path, batch: int, skip: int) -> float:
    """Samples/s between micro-step `skip` and the last, from the log's cumulative rates (t_k = k B / rate_k)."""
    rows = list(csv.DictReader(log_path.open()))
    steps = [(int(r["micro_step"]), float(r["samples_per_s"])) for r in rows]
    (k0, r0), (k1, r1) = steps[min(skip, len(steps) - 2)], steps[-1]
    return (k1 - k0) * batch / (k1 * batch / r1 - k0 * batch / r0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a CinC 2017 folder (a few dozen records will do)")
    parser.add_argument("--out", type=Path, required=True, help="working folder (encoder, LLM checkpoints, cache)")
    parser.add_argument("--results", type=Path, help="JSON to write (default: benchmarks/results/gpu_check_<kind>)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--layers", type=int, default=QWEN3_8B["num_hidden_layers"])
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per training run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--accumulation", type=int, default=4)
    parser.add_argument("--records", type=int, default=64, help="records scored and answered")
    parser.add_argument("--diagnose", type=int, default=10, help="30-s recordings diagnosed")
    parser.add_argument("--max-new-tokens", type=int, help="longest answer (default: the preset's)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak_tflops = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    results = args.results or Path(__file__).parent / "results" / f"gpu_check_{device.type}.json"
    lm = f"{QWEN3_8B_RANDOM}:{args.layers}"
    model_config, train_preset, eval_config = LLM_PRESETS["qwen3-8b"]
    model_config = dataclasses.replace(model_config, lm=lm)
    if args.max_new_tokens:
        eval_config = dataclasses.replace(eval_config, max_new_tokens=args.max_new_tokens)
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "device": name,
              "torch": torch.__version__, "lm": lm, "lm_dtype": str(resolve_dtype(model_config.lm_dtype, device)),
              "preset": "qwen3-8b", "flop_per_token_formula": "4 x N_layers + 4 x V x H x answer_share (see the "
              "script's docstring)", "peak_tflops": peak_tflops, "stages": {}, "errors": {}}
    guard = DeviceGuard(device)

    def write() -> None:
        report["inputs_checked"], report["inputs_misplaced"] = guard.checked, guard.misplaced
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(report, indent=2))

    dataset = load_cinc_folder(args.data, task="binary", progress=False)
    split = make_split(dataset.labels, "binary", 42)
    stages = report["stages"]

    started = time.perf_counter()
    encoder_config = dataclasses.replace(TRAINING_PRESETS["paper"], epochs=1, seed=42)
    encoder = train_encoder(dataset, split, args.out / "encoder", ENCODER_PRESETS["paper"], encoder_config, False,
                            str(device))
    synchronize(device)
    stages["encoder"] = {"seconds_one_epoch": time.perf_counter() - started, "train_records": len(split.train),
                         "parameters_on_device": parameters_on(encoder, device)}
    del encoder
    write()

    cache = args.out / "cache"
    finals = {}
    for checkpointing in (False, True):
        key = f"training_{'with' if checkpointing else 'without'}_gradient_checkpointing"
        config = dataclasses.replace(train_preset, epochs=1, batch_size=args.batch_size,
                                     gradient_accumulation_steps=args.accumulation, balance="oversample",
                                     samples_per_epoch=args.steps * args.batch_size * args.accumulation,
                                     gradient_checkpointing=checkpointing, seed=42)
        reset_peak(device)
        started = time.perf_counter()
        out = args.out / ("llm_checkpointing" if checkpointing else "llm")
        try:
            finals[checkpointing] = train_llm(dataset, split, args.out / "encoder", out, model_config, config, cache,
                                              False, str(device))
        except torch.OutOfMemoryError as error:
            report["errors"][key] = f"out of memory: {error}"
            write()
            continue
        synchronize(device)
        micro_steps = args.steps * args.accumulation
        stages[key] = {"seconds_total": time.perf_counter() - started,
                       "optimiser_steps": args.steps, "batch": args.batch_size, "accumulation": args.accumulation,
                       "samples_per_s": steady_rate(out / LOG_NAME, args.batch_size, max(1, micro_steps // 5)),
                       "peak_memory_gb": peak_memory_gb(device),
                       "saved_trainable_mb": sum(f.stat().st_size for f in (out / "final").rglob("*")
                                                 if f.is_file() and "tokenizer" not in f.parts) / 2**20}
        write()

    final = finals.get(True) or finals.get(False)
    reset_peak(device)
    model = ECGLLM.from_pretrained(final, device=device).for_inference()  # as evaluate_model_folder loads it
    ids = (split.train + split.val + split.test)[:args.records]
    examples = prepare_examples(model, dataset, ids, cache, False)
    tokens = [len(e.prompt_ids) + len(e.answer_ids) for e in examples]
    answer_share = sum(len(e.answer_ids) for e in examples) / sum(tokens)
    flop = flop_per_token(args.layers, answer_share)
    report["tokens_per_record"] = statistics.mean(tokens)
    report["flop_per_token"] = flop
    for key in [k for k in stages if k.startswith("training")]:
        stage = stages[key]
        stage["tokens_per_s"] = stage["samples_per_s"] * report["tokens_per_record"]
        stage["achieved_tflops"] = stage["tokens_per_s"] * flop / 1e12
        stage["mfu"] = stage["achieved_tflops"] / peak_tflops if peak_tflops else None
        stage["epoch_minutes_estimated"] = EPOCH_RECORDS / stage["samples_per_s"] / 60

    predict(model, examples[:eval_config.batch_size], eval_config.batch_size, progress=False)  # warm-up
    synchronize(device)
    started = time.perf_counter()
    predict(model, examples, eval_config.batch_size, progress=False)
    synchronize(device)
    scoring = time.perf_counter() - started
    started = time.perf_counter()
    predict(model, examples, eval_config.batch_size, eval_config.max_new_tokens, 0.0, progress=False)
    synchronize(device)
    answering = time.perf_counter() - started
    stages["evaluation"] = {"records": len(examples), "batch_size": eval_config.batch_size,
                            "max_new_tokens": eval_config.max_new_tokens,
                            "scoring_records_per_s": len(examples) / scoring,
                            "scoring_and_generation_records_per_s": len(examples) / answering,
                            "test_split_869_minutes_estimated": TEST_RECORDS / (len(examples) / answering) / 60,
                            "peak_memory_gb": peak_memory_gb(device),
                            "parameters_on_device": parameters_on(model, device)}
    del model
    write()

    reset_peak(device)
    model = load_model(final, str(device))
    pre = model.encoder.config.preprocess
    long_enough = [i for i in ids if len(dataset.records[i].signal) >= 30 * dataset.records[i].fs]
    if len(long_enough) < args.diagnose:
        long_enough = [i for i in split.train + split.val + split.test
                       if len(dataset.records[i].signal) >= 30 * dataset.records[i].fs]
    recordings = [(dataset.records[i].signal[:int(30 * dataset.records[i].fs)], dataset.records[i].fs, i)
                  for i in long_enough[:args.diagnose]]
    diagnoser = Diagnoser(model, batch_size=16, max_new_tokens=eval_config.max_new_tokens)
    diagnoser(*recordings[0])  # warm-up: the prompt prefix's cache
    one_by_one = []
    for recording in recordings:
        synchronize(device)
        started = time.perf_counter()
        diagnoser(*recording)
        synchronize(device)
        one_by_one.append(time.perf_counter() - started)
    started = time.perf_counter()
    outcomes = diagnoser.diagnose_many(recordings)
    synchronize(device)
    stages["diagnose"] = {"recordings": len(recordings), "seconds_each": 30, "fs_model": pre.fs,
                          "seconds_per_record_one_at_a_time_median": float(np.median(one_by_one)),
                          "seconds_per_record_batched": (time.perf_counter() - started) / len(recordings),
                          "all_diagnosed": all(not isinstance(o, Exception) for o in outcomes),
                          "peak_memory_gb": peak_memory_gb(device),
                          "parameters_on_device": parameters_on(model, device)}
    write()
    guard.handle.remove()
    print(json.dumps(report, indent=2))
    print(f"wrote {results}")
    ok = not guard.misplaced and all(s.get("parameters_on_device", True) for s in stages.values())
    return 0 if ok and not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
