"""Frozen-encoder features and rhythm evidence, computed once per record and cached on disk.

The encoder never changes while the LLM trains, so recomputing it at every step (the original's way) only costs time.
Feature files are keyed by the encoder (weights and config, which holds the preprocessing), the number of ECG tokens
and the input (centre crop or whole record); rhythm entries by the signal.
"""

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ecgllm.data.dataset import CinCDataset
from ecgllm.encoder.modeling_mscnn import MSCNN
from ecgllm.encoder.predict import record_windows
from ecgllm.llm.modeling_ecgllm import pool_ecg_tokens
from ecgllm.rhythm import RhythmEvidence, measure_rhythm

logger = logging.getLogger(__name__)


@torch.no_grad()
def encode_records(encoder: MSCNN, signals: list[np.ndarray], ecg_tokens: int, ecg_input: str = "center",
                   batch_size: int = 128, progress: bool = False) -> torch.Tensor:
    """[N, k, D] ECG tokens per record: of its centre 8-s crop (the SPEC), or averaged over its sliding windows."""
    encoder.eval()
    pre = encoder.config.preprocess
    windows, owners = record_windows(signals, ecg_input, pre.window, pre.stride)
    x = torch.from_numpy(windows).unsqueeze(1)
    tokens = torch.cat([pool_ecg_tokens(encoder.feature_map(x[i:i + batch_size]), ecg_tokens)
                        for i in tqdm(range(0, len(x), batch_size), desc="encoding ECGs", unit="batch",
                                      disable=not progress)])
    owners = torch.from_numpy(owners)
    return torch.stack([tokens[owners == n].mean(0) for n in range(len(signals))])


def cached_features(encoder: MSCNN, fingerprint: str, dataset: CinCDataset, ids: list[str], ecg_tokens: int,
                    cache_dir: Path, ecg_input: str = "center", progress: bool = True) -> dict[str, torch.Tensor]:
    """ECG tokens [k, D] per record id, read from the cache and completed there when records are missing."""
    path = Path(cache_dir) / f"features-{fingerprint}-k{ecg_tokens}-{ecg_input}.safetensors"
    cached = load_file(str(path)) if path.exists() else {}
    missing = [i for i in ids if i not in cached]
    if missing:
        logger.info("encoding %d records with the frozen encoder (cached in %s)", len(missing), path)
        computed = encode_records(encoder, [dataset.records[i].signal for i in missing], ecg_tokens, ecg_input,
                                  progress=progress)
        cached.update({i: computed[n].contiguous() for n, i in enumerate(missing)})
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(cached, str(path))
    return {i: cached[i] for i in ids}


def _signal_key(signal: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(signal).tobytes()).hexdigest()[:16]


def cached_rhythm(dataset: CinCDataset, ids: list[str], cache_dir: Path, progress: bool = True
                  ) -> dict[str, RhythmEvidence]:
    """Rhythm evidence per record id, measured on the whole record once and cached as JSON."""
    path = Path(cache_dir) / "rhythm.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    result, changed = {}, False
    for i in tqdm(ids, desc="measuring rhythm", unit="rec", disable=not progress):
        record = dataset.records[i]
        key = _signal_key(record.signal)
        entry = cached.get(i)
        if entry is None or entry["signal"] != key:
            entry = {"signal": key, "evidence": measure_rhythm(record.signal, record.fs).to_dict()}
            cached[i], changed = entry, True
        result[i] = RhythmEvidence(**entry["evidence"])
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached))
    return result
