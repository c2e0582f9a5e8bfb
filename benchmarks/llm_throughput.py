"""ECG-LLM speed on this machine, with one LM:
- training samples/s with the feature cache versus recomputing the frozen encoder at every step (the original's way);
- evaluation per record by scoring (one forward pass for both decision sentences) versus generating 50 tokens;
- peak resident memory of each.

    python benchmarks/llm_throughput.py --data ../shared/data/cinc2017/training2017 --encoder runs/cpu/encoder

Each measurement runs in its own process so that its peak memory is its own. Prints the figures and writes them to
benchmarks/results/llm_throughput.json.
"""

import argparse
import json
import multiprocessing
import resource
import time
from pathlib import Path

import torch

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.preprocess import record_windows
from ecgllm.llm.chat import ChatFormatter
from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
from ecgllm.llm.data import TrainingCollator, build_examples
from ecgllm.llm.ecg_tokens import encode_records, encode_windows
from ecgllm.llm.modeling_ecgllm import ECGLLM
from ecgllm.llm.scoring import decision_scores, generate_answers
from ecgllm.rhythm import measure_rhythm
from ecgllm.utils import describe_host


def measure(task: str, args) -> dict:
    torch.manual_seed(0)
    model_config, train_config, _ = LLM_PRESETS[args.preset]
    model = ECGLLM.build(model_config, args.encoder)
    dataset = load_cinc_folder(args.data, progress=False)
    ids = sorted(dataset.records)[: args.records]
    signals = [dataset.records[i].signal for i in ids]
    rhythms = [measure_rhythm(dataset.records[i].signal, dataset.records[i].fs) for i in ids]
    tokens = encode_records(model.encoder, signals, model.config.ecg_tokens)
    formatter = ChatFormatter(model.tokenizer, model.config)
    examples = build_examples(model, ids, dataset.labels, tokens, rhythms)
    collate = TrainingCollator(model.tokenizer.pad_token_id)
    batch_size = train_config.batch_size
    batches = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    pre = model.encoder.config.preprocess
    windows = torch.from_numpy(record_windows(signals, "center", pre.window, pre.stride)[0]).unsqueeze(1)

    if task.startswith("train"):
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        model.train()
        started = None
        for n, batch in enumerate(batches):
            if n == 1:
                started = time.perf_counter()  # the first step warms up
            inputs = collate(batch)
            if task == "train_recompute_encoder":
                rows = [ids.index(e.record) for e in batch]
                # The original ran the frozen CNN inside every training step.
                recomputed = encode_windows(model.encoder, windows[rows], model.config.ecg_tokens)
                inputs["ecg_features"] = model.projector_input(recomputed, [e.evidence for e in batch])
            model(**inputs).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        seconds = time.perf_counter() - started
        result = {"samples_per_s": round((len(examples) - len(batches[0])) / seconds, 3)}
    else:
        model.eval()
        started = time.perf_counter()
        for batch in batches:
            prompts, feats = [e.prompt_ids for e in batch], torch.stack([e.features for e in batch])
            if task == "score":
                decision_scores(model, formatter, prompts, feats)
            else:
                generate_answers(model, formatter, prompts, feats, max_new_tokens=50)
        result = {"seconds_per_record": round((time.perf_counter() - started) / len(examples), 4)}
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def _child(task, args, queue):
    queue.put(measure(task, args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, required=True)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--records", type=int, default=49, help="records per measurement (first batch is warm-up)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "llm_throughput.json")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    results = {"machine": describe_host(),
               "preset": args.preset, "lm": LLM_PRESETS[args.preset][0].lm, "records": args.records}
    for task in ("train_feature_cache", "train_recompute_encoder", "score", "generate_50_tokens"):
        queue = context.Queue()
        process = context.Process(target=_child, args=(task, args, queue))
        process.start()
        results[task] = queue.get()
        process.join()
        print(f"{task}: {results[task]}", flush=True)
    train, recompute = results["train_feature_cache"], results["train_recompute_encoder"]
    results["feature_cache_speedup"] = round(train["samples_per_s"] / recompute["samples_per_s"], 3)
    results["generation_over_scoring_time"] = round(results["generate_50_tokens"]["seconds_per_record"]
                                                    / results["score"]["seconds_per_record"], 2)
    print(f"feature cache speed-up {results['feature_cache_speedup']}x; "
          f"generation takes {results['generation_over_scoring_time']}x the time of scoring")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
