"""From ECG samples to ECG tokens: the frozen encoder's feature map, average-pooled to k tokens per 8-s window.

    windows [W, L] z-scored -> MS-CNN feature map [W, 33, D] -> pooled [W, k, D]
    a record -> its centre crop's tokens (the SPEC), or the mean of its sliding windows' tokens ("whole")

Every path from a signal to ECG tokens (the training cache, diagnosis, external evaluation) goes through here; what
the projector then reads beside them is assembled by `ECGLLM.projector_input`.
"""

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ecgllm.data.preprocess import record_windows
from ecgllm.encoder.modeling_mscnn import Encoder


def pool_ecg_tokens(feature_map: torch.Tensor, k: int) -> torch.Tensor:
    """[B, T, D] -> [B, k, D] by average pooling over time; k = 1 is the encoder's pooled feature."""
    return F.adaptive_avg_pool1d(feature_map.transpose(1, 2), k).transpose(1, 2)


@torch.no_grad()
def encode_windows(encoder: Encoder, windows: np.ndarray | torch.Tensor, ecg_tokens: int, batch_size: int = 128,
                   progress: bool = False) -> torch.Tensor:
    """z-scored windows [W, L] (or [W, 1, L]) -> ECG tokens [W, k, D], computed on the encoder's device, returned on
    the CPU."""
    encoder.eval()
    x = torch.as_tensor(windows)
    x = x.unsqueeze(1) if x.dim() == 2 else x
    device = next(encoder.parameters()).device
    batches = tqdm(range(0, len(x), batch_size), desc="encoding ECGs", unit="batch", disable=not progress)
    return torch.cat([pool_ecg_tokens(encoder.feature_map(x[i:i + batch_size].to(device)), ecg_tokens).float().cpu()
                      for i in batches])


def encode_signal_windows(encoder: Encoder, signal: np.ndarray, ecg_tokens: int, batch_size: int = 128
                          ) -> torch.Tensor:
    """One recording at the encoder's rate -> the tokens of each of its sliding 8-s windows [W, k, D]."""
    pre = encoder.config.preprocess
    windows, _ = record_windows([signal], "whole", pre.window, pre.stride)
    return encode_windows(encoder, windows, ecg_tokens, batch_size)


def encode_records(encoder: Encoder, signals: list[np.ndarray], ecg_tokens: int, ecg_input: str = "center",
                   batch_size: int = 128, progress: bool = False) -> torch.Tensor:
    """[N, k, D] ECG tokens per record: of its centre 8-s crop (the SPEC), or averaged over its sliding windows."""
    pre = encoder.config.preprocess
    windows, owners = record_windows(signals, ecg_input, pre.window, pre.stride)
    tokens = encode_windows(encoder, windows, ecg_tokens, batch_size, progress)
    owners = torch.from_numpy(owners)
    return torch.stack([tokens[owners == n].mean(0) for n in range(len(signals))])
