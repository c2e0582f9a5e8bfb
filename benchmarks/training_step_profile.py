"""Where an LLM training micro-step spends its time: ms per micro-step of the `qwen3-8b` preset's model (Qwen3-8B's
shape, random weights) for a few batch sizes and LoRA dropout settings, then torch.profiler's top operators.

    python benchmarks/training_step_profile.py --data CINC_SUBSET [--layers 36] [--device cuda]

Forward + backward of ECGLLM (answer-only loss) under bf16 autocast as training runs it, no optimiser step.
Prints the figures and writes benchmarks/results/training_step_profile_<kind>.json.
"""

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.encoder.configuration_mscnn import ENCODER_PRESETS
from ecgllm.encoder.modeling_mscnn import MSCNN
from ecgllm.llm.backbones import QWEN3_8B, QWEN3_8B_RANDOM
from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
from ecgllm.llm.data import TrainingCollator, prepare_examples
from ecgllm.llm.modeling_ecgllm import ECGLLM
from ecgllm.utils import resolve_device


def micro_step_ms(model, batches, device, warmup: int = 2) -> float:
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")
    times = []
    for n, batch in enumerate(batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if n >= warmup:
            times.append(time.perf_counter() - started)
    model.zero_grad(set_to_none=True)
    return 1000 * sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--layers", type=int, default=QWEN3_8B["num_hidden_layers"])
    parser.add_argument("--steps", type=int, default=6, help="timed micro-steps per setting (after 2 warm-up)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    device = resolve_device(args.device)
    results = args.results or Path(__file__).parent / "results" / f"training_step_profile_{device.type}.json"

    dataset = load_cinc_folder(args.data, task="binary", progress=False)
    work = Path(tempfile.mkdtemp(prefix="ecgllm-profile-"))
    torch.manual_seed(0)
    MSCNN(ENCODER_PRESETS["paper"]).save_pretrained(work / "encoder")  # untrained: only its shapes matter here
    base = dataclasses.replace(LLM_PRESETS["qwen3-8b"][0], lm=f"{QWEN3_8B_RANDOM}:{args.layers}")
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "lm": base.lm, "ms_per_micro_step": {}}
    ids = sorted(dataset.records)
    for dropout in (base.lora.dropout, 0.0):
        config = dataclasses.replace(base, lora=dataclasses.replace(base.lora, dropout=dropout))
        model = ECGLLM.build(config, work / "encoder", 42, device).train()
        examples = prepare_examples(model, dataset, ids, work / "cache", False)
        collate = TrainingCollator(model.tokenizer.pad_token_id)
        for batch_size in args.batch_sizes if dropout else args.batch_sizes[:1]:
            batches = [collate(examples[i * batch_size:(i + 1) * batch_size]) for i in range(args.steps + 2)]
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            key = f"batch {batch_size}, LoRA dropout {dropout}"
            report["ms_per_micro_step"][key] = {
                "ms": micro_step_ms(model, batches, device),
                "tokens": sum(int(b["attention_mask"].sum()) for b in batches) / len(batches),
                "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}
            print(key, report["ms_per_micro_step"][key], flush=True)
        if dropout:
            batches = [collate(examples[i * 4:(i + 1) * 4]) for i in range(4)]
            micro_step_ms(model, batches[:2], device, warmup=1)
            activities = [torch.profiler.ProfilerActivity.CPU] + (
                [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
            with torch.profiler.profile(activities=activities) as profile:
                micro_step_ms(model, batches[2:], device, warmup=0)
            sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
            table = profile.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=60)
            print(table)
            report["profile_batch_4"] = table
            report["kernel_launches_per_micro_step"] = sum(
                e.count for e in profile.key_averages() if e.key.startswith(("cudaLaunchKernel", "cuLaunchKernel"))
            ) / 2
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2))
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
