"""Frozen-encoder ECG tokens and rhythm evidence, computed once per record and cached on disk (a run's cache/).

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
from ecgllm.encoder.modeling_mscnn import Encoder
from ecgllm.llm.ecg_tokens import encode_records
from ecgllm.rhythm import RhythmEvidence, measure_rhythm

logger = logging.getLogger(__name__)


def cached_features(encoder: Encoder, fingerprint: str, dataset: CinCDataset, ids: list[str], ecg_tokens: int,
                    cache_dir: Path, ecg_input: str = "center", progress: bool = True) -> dict[str, torch.Tensor]:
    """ECG tokens [k, D] per record id, read from the cache and completed there when records are missing."""
    path = Path(cache_dir) / f"features-{fingerprint}-k{ecg_tokens}-{ecg_input}.safetensors"
    cached = load_file(str(path)) if path.exists() else {}
    missing = [i for i in ids if i not in cached]
    if missing:
        logger.info("encoding %d records with the frozen encoder (cached in %s)", len(missing), path)
        signals = dataset.signals(missing, encoder.config.preprocess.fs)
        computed = encode_records(encoder, signals, ecg_tokens, ecg_input, progress=progress)
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
