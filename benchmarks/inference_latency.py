"""Inference speed of a trained ECG-LLM on 30-s recordings, on this machine:
- latency of `diagnose` per record, mean / p50 / p95, against its floor: one scoring pass of the record plus decoding
  the answer from that pass's cache (`score_and_answer`, the trained answer checked as a draft), the same without
  the draft (token by token), and the scoring pass alone;
- `diagnose_many`: records/s when the records come as one batch;
- scoring the windows of one record with the shared prompt prefix's key/value cache versus without it;
- records/s when many records are processed in batches: scoring, and generating the answer;
- peak resident memory.

    python benchmarks/inference_latency.py --model runs/cpu --data ../shared/data/cinc2017/training2017

Prints the figures and writes them to benchmarks/results/inference_latency.json.
"""

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.split import Split
from ecgllm.inference.diagnose import Diagnoser
from ecgllm.llm.calibration import decision_log_odds
from ecgllm.llm.chat import ChatFormatter
from ecgllm.llm.ecg_tokens import encode_signal_windows
from ecgllm.llm.scoring import PrefixCache, decision_scores, score_and_answer, score_batched
from ecgllm.rhythm import measure_rhythm
from ecgllm.runs.layout import RunLayout, load_model, resolve_model_dir
from ecgllm.utils import describe_host

SECONDS = 30


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


def summary(seconds: list[float]) -> dict:
    return {"mean_s": round(float(np.mean(seconds)), 4), "p50_s": round(float(np.percentile(seconds, 50)), 4),
            "p95_s": round(float(np.percentile(seconds, 95)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="run folder or trained ECG-LLM folder")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--records", type=int, default=24, help="30-s test records (the first one warms up)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "inference_latency.json")
    args = parser.parse_args()

    model_dir = resolve_model_dir(args.model)
    model = load_model(model_dir, args.device)
    split_file = RunLayout.of_model_dir(model_dir).split
    dataset = load_cinc_folder(args.data, progress=False)
    ids = Split.load(split_file).test if split_file.exists() else sorted(dataset.records)
    records = [dataset.records[i] for i in ids if dataset.records[i].seconds >= SECONDS][:args.records]
    fs = records[0].fs
    signals = [r.signal[:int(SECONDS * fs)] for r in records]
    formatter = ChatFormatter(model.tokenizer, model.config)
    results = {"machine": describe_host(), "device": str(model.device),
               "model": str(model_dir), "lm": model.config.lm,
               "ecg_tokens": model.config.ecg_tokens, "rhythm_prompt": model.config.rhythm_prompt,
               "records": len(records) - 1, "record_seconds": SECONDS}

    with torch.no_grad():
        diagnoser = Diagnoser(model, args.batch_size)
        diagnoser(signals[0], fs, "warm-up")
        latency = [timed(diagnoser, s, fs)[0] for s in signals[1:]]
        results["diagnose_per_record"] = summary(latency)
        print(f"diagnose per 30-s record: {results['diagnose_per_record']}", flush=True)
        seconds, _ = timed(diagnoser.diagnose_many, [(s, fs, "r") for s in signals[1:]])
        results["diagnose_many_records_per_s"] = round((len(signals) - 1) / seconds, 3)
        print(f"diagnose_many, {len(signals) - 1} records as one call: "
              f"{results['diagnose_many_records_per_s']} records/s", flush=True)

        # Windows of one record, with and without the shared prefix (same prompts, same tokens).
        prompts, tokens, averaged, measured = [], [], [], []
        for signal in signals:
            windows = encode_signal_windows(model.encoder, signal, model.config.ecg_tokens, args.batch_size)
            evidence = measure_rhythm(signal, fs)
            measured.append(evidence)
            tokens.append(model.projector_input(windows, [evidence] * len(windows)))
            averaged.append(model.projector_input(windows.mean(0, keepdim=True), [evidence]))
            prompts.append([formatter.prompt_ids(evidence)] * len(windows))
        prefix = PrefixCache(model, formatter, prompts[0][0])
        threshold = decision_log_odds(model.calibration)
        record_prompts = [p[0] for p in prompts]
        floor = {"one_scoring_pass": [timed(decision_scores, model, formatter, [p], a, prefix)[0]
                                      for p, a in zip(record_prompts[1:], averaged[1:])],
                 "scoring_pass_and_answer": [timed(score_and_answer, model, formatter, [p], a, threshold, 48,
                                                   None, prefix, [e])[0]
                                             for p, a, e in zip(record_prompts[1:], averaged[1:], measured[1:])],
                 # The same answer decoded token by token, without checking the trained answer as a draft.
                 "scoring_pass_and_answer_without_draft": [timed(score_and_answer, model, formatter, [p], a,
                                                                 threshold, 48, None, prefix)[0]
                                                           for p, a in zip(record_prompts[1:], averaged[1:])]}
        for name, seconds in floor.items():
            results[name] = summary(seconds)
            print(f"{name} per record: {results[name]}", flush=True)
        results["diagnose_over_scoring_and_answer"] = round(results["diagnose_per_record"]["mean_s"]
                                                            / results["scoring_pass_and_answer"]["mean_s"], 3)
        for name, cache in (("scoring_with_prefix_cache", prefix), ("scoring_without_prefix_cache", None)):
            seconds = [timed(decision_scores, model, formatter, p, t, cache)[0]
                       for p, t in zip(prompts[1:], tokens[1:])]
            results[name] = summary(seconds)
            print(f"{name} (one record's {len(tokens[1])} windows): {results[name]}", flush=True)
        results["prefix_cache_speedup"] = round(results["scoring_without_prefix_cache"]["mean_s"]
                                                / results["scoring_with_prefix_cache"]["mean_s"], 3)

        # Many records at once: all windows in batches for scoring; one answer per record for generation.
        all_prompts = [p for ps in prompts[1:] for p in ps]
        all_tokens = torch.cat(tokens[1:])
        seconds, _ = timed(score_batched, model, formatter, all_prompts, all_tokens, args.batch_size)
        results["batch_scoring_records_per_s"] = round((len(records) - 1) / seconds, 3)
        record_tokens = torch.cat(averaged[1:])
        seconds, _ = timed(lambda: [score_and_answer(model, formatter, record_prompts[1:][i:i + args.batch_size],
                                                     record_tokens[i:i + args.batch_size], threshold, 48,
                                                     None, prefix, measured[1:][i:i + args.batch_size], True)
                                    for i in range(0, len(record_tokens), args.batch_size)])
        results["batch_scoring_and_answer_records_per_s"] = round((len(records) - 1) / seconds, 3)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(f"prefix cache speed-up {results['prefix_cache_speedup']}x; batches: scoring "
          f"{results['batch_scoring_records_per_s']} records/s, scoring and answer "
          f"{results['batch_scoring_and_answer_records_per_s']} records/s; diagnose / (scoring pass + answer) "
          f"{results['diagnose_over_scoring_and_answer']}; peak RSS {results['peak_rss_mb']} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
