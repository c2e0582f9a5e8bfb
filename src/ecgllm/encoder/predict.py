"""P(AF) from the MS-CNN for a list of signals (a four-class MS-CNN: P of each class): one centre crop (the original
protocol) or the whole record."""

import numpy as np
import torch
from tqdm.auto import tqdm

from ecgllm.data.preprocess import aggregate_windows, record_windows
from ecgllm.encoder.modeling_mscnn import Encoder


def probabilities_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """The MS-CNN's logits -> P(AF) [N] (one logit: binary task) or P of each class [N, C]."""
    return torch.sigmoid(logits) if logits.ndim == 1 else torch.softmax(logits, -1)


@torch.no_grad()
def window_probabilities(model: Encoder, windows: np.ndarray, batch_size: int = 256, progress: bool = False,
                         desc: str = "windows") -> np.ndarray:
    """[N, L] z-scored windows -> P(AF) [N], or P of each class [N, C] (four-class task)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in tqdm(range(0, len(windows), batch_size), desc=desc, unit="batch", disable=not progress):
        batch = torch.from_numpy(np.ascontiguousarray(windows[start:start + batch_size])).unsqueeze(1).to(device)
        out.append(probabilities_from_logits(model(batch).float()).cpu().numpy())
    if not out:
        return np.zeros((0,) if model.config.num_outputs == 1 else (0, model.config.num_outputs), dtype=np.float32)
    return np.concatenate(out)


def predict_records(model: Encoder, signals: list[np.ndarray], mode: str = "whole", batch_size: int = 256,
                    progress: bool = False) -> np.ndarray:
    """P(AF) per record [n] (four-class: [n, C]); in 'whole' mode the windows' probabilities are aggregated as the
    config says."""
    pre = model.config.preprocess
    windows, owners = record_windows(signals, mode, pre.window, pre.stride)
    probabilities = window_probabilities(model, windows, batch_size, progress, desc=f"MS-CNN {mode}")
    if mode == "center":
        return probabilities
    return np.array([aggregate_windows(probabilities[owners == i], pre.aggregate) for i in range(len(signals))])
