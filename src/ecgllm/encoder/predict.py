"""P(AF) from the MS-CNN for a list of signals: one centre crop (the original protocol) or the whole record."""

import numpy as np
import torch
from tqdm.auto import tqdm

from ecgllm.data.preprocess import aggregate_windows, record_windows
from ecgllm.encoder.modeling_mscnn import MSCNN


@torch.no_grad()
def window_probabilities(model: MSCNN, windows: np.ndarray, batch_size: int = 256, progress: bool = False,
                         desc: str = "windows") -> np.ndarray:
    """[N, L] z-scored windows -> P(AF) [N]."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in tqdm(range(0, len(windows), batch_size), desc=desc, unit="batch", disable=not progress):
        batch = torch.from_numpy(np.ascontiguousarray(windows[start:start + batch_size])).unsqueeze(1).to(device)
        out.append(torch.sigmoid(model(batch)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def predict_records(model: MSCNN, signals: list[np.ndarray], mode: str = "whole", batch_size: int = 256,
                    progress: bool = False) -> np.ndarray:
    """P(AF) per record; in 'whole' mode the windows' probabilities are aggregated as the config says."""
    pre = model.config.preprocess
    windows, owners = record_windows(signals, mode, pre.window, pre.stride)
    probabilities = window_probabilities(model, windows, batch_size, progress, desc=f"MS-CNN {mode}")
    if mode == "center":
        return probabilities
    return np.array([aggregate_windows(probabilities[owners == i], pre.aggregate) for i in range(len(signals))])
