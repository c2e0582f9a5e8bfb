"""How much better the frozen encoder's features separate AF on the records it was trained on than on records it
never saw, and how much training noise (`--feature-noise`) closes that gap.

The ECG-LLM learns from the training records' features; if those separate AF almost perfectly, the LM learns to
trust them and ignore the rhythm figures, then meets held-out records where they do not. For each noise level this
prints the ROC AUC of the encoder's own classifier head on the noisy whole-record features of the training records
(mean of --draws draws), beside its AUC on the clean validation features; the test split is not read.

    python benchmarks/feature_separability.py --run runs/cpu --data ../shared/data/cinc2017/training2017

Prints the figures and writes them to benchmarks/results/feature_separability.json.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.split import Split
from ecgllm.encoder.modeling_mscnn import Encoder, load_encoder
from ecgllm.llm.features import cached_features
from ecgllm.llm.modeling_ecgllm import encoder_fingerprint
from ecgllm.runs.layout import RunLayout


@torch.no_grad()
def head_auc(encoder: Encoder, features: torch.Tensor, labels: np.ndarray) -> float:
    return float(roc_auc_score(labels, encoder.classify(features).squeeze(-1).numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run folder with split.json and encoder/")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache", type=Path, help="feature cache folder (default: the run's)")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.5, 1.0, 1.25, 1.5, 2.0])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "feature_separability.json")
    args = parser.parse_args()

    layout = RunLayout(args.run)
    encoder = load_encoder(layout.encoder).eval()
    split = Split.load(layout.split)
    dataset = load_cinc_folder(args.data, progress=False)
    fingerprint = encoder_fingerprint(layout.encoder)

    def whole_record_features(name: str) -> tuple[torch.Tensor, np.ndarray]:
        ids = split.ids(name)
        features = cached_features(encoder, fingerprint, dataset, ids, 1, args.cache or layout.cache, "whole")
        return torch.stack([features[i][0] for i in ids]), np.array([split.labels[i] for i in ids])

    train, train_labels = whole_record_features("train")
    val, val_labels = whole_record_features("val")
    spread = train.std(0)  # as feature_noise_std scales it
    generator = torch.Generator().manual_seed(0)
    result = {"encoder": str(layout.encoder), "validation_auc": head_auc(encoder, val, val_labels),
              "train_auc": {"0": head_auc(encoder, train, train_labels)}}
    for noise in args.noise:
        aucs = [head_auc(encoder, train + noise * spread * torch.randn(train.shape, generator=generator),
                         train_labels) for _ in range(args.draws)]
        result["train_auc"][str(noise)] = float(np.mean(aucs))

    print(f"encoder head ROC AUC on clean validation features: {result['validation_auc']:.4f}")
    for noise, auc in result["train_auc"].items():
        print(f"  on training features, noise {noise:>5}: {auc:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
