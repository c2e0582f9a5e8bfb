"""Throughput of the MS-CNN presets on this machine and the time to load and preprocess the data set.

    python benchmarks/encoder_throughput.py --data ../shared/data/cinc2017/training2017

Prints the figures and writes them to benchmarks/results/encoder_throughput.json.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.preprocess import AugmentConfig, augment_crop, record_windows
from ecgllm.encoder import ENCODER_PRESETS, MSCNN
from ecgllm.utils import describe_host


def timed(fn, repeats: int) -> float:
    """Seconds per call, after one warm-up call."""
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "encoder_throughput.json")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    dataset = load_cinc_folder(args.data, progress=False)
    load_s = time.perf_counter() - started
    signals = list(dataset.records.values())
    started = time.perf_counter()
    windows, _ = record_windows([r.signal for r in signals], "whole", 2400, 1200)
    preprocess_s = time.perf_counter() - started
    results = {
        "machine": describe_host(),
        "data": {"records": len(signals), "load_s": round(load_s, 2), "whole_record_windows": len(windows),
                 "zscore_and_window_s": round(preprocess_s, 2)},
        "presets": {},
    }
    print(f"load {len(signals)} records: {load_s:.1f} s; z-score + 8-s windows ({len(windows)}): {preprocess_s:.1f} s")

    rng = np.random.default_rng(0)
    batch = torch.from_numpy(np.stack([augment_crop(windows[i], 2400, AugmentConfig(), rng)
                                       for i in rng.integers(0, len(windows), args.batch_size)])).unsqueeze(1)
    labels = torch.from_numpy(rng.integers(0, 2, args.batch_size).astype(np.float32))
    eval_batch = torch.from_numpy(windows[:256]).unsqueeze(1)
    for name, config in ENCODER_PRESETS.items():
        model = MSCNN(config)
        optimizer = torch.optim.AdamW(model.parameters())

        def train_step(model=model, optimizer=optimizer):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        model.train()
        train_s = timed(train_step, args.steps)
        model.eval()
        with torch.no_grad():
            feature_s = timed(lambda model=model: model.features(eval_batch), 3)
        row = {"parameters": sum(p.numel() for p in model.parameters()), "feature_dim": config.feature_dim,
               "train_samples_per_s": round(args.batch_size / train_s, 1),
               "feature_samples_per_s": round(len(eval_batch) / feature_s, 1),
               "epoch_minutes_4340": round(4340 * train_s / args.batch_size / 60, 1)}
        results["presets"][name] = row
        print(f"{name:>6}: {row}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
