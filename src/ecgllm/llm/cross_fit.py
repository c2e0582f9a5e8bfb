"""Cross-fitted verdicts: each training record's AF logit (four classes: class logits) from an MS-CNN that never saw it.

The run's encoder was fitted on the training records, so its verdict on them is almost never wrong, while on held-out
records it sometimes is: an LM trained on the former learns to trust the verdict more than it deserves. With K folds
of the training split, encoder k (the run's encoder's architecture and training settings, the same validation records)
is trained on the training records outside fold k and gives the verdicts of fold k. Validation and test records, and
every recording diagnosed, keep the run's encoder's own verdict: what the LM meets after training.
"""

import dataclasses
import json
import logging
from pathlib import Path

import torch

from ecgllm.data.dataset import CinCDataset
from ecgllm.data.split import Split
from ecgllm.encoder.configuration_mscnn import EncoderTrainingConfig, encoder_training_preset
from ecgllm.encoder.modeling_mscnn import Encoder, load_encoder
from ecgllm.llm.features import cached_features
from ecgllm.llm.modeling_ecgllm import encoder_fingerprint, head_logit
from ecgllm.modeling_utils import TRAINING_CONFIG_NAME, WEIGHTS_NAME, config_from_dict

logger = logging.getLogger(__name__)

FOLDS_DIR = "cross_fit"  # inside the run's encoder folder: cross_fit/fold_{k}


def fold_of_training_records(split: Split, folds: int, seed: int) -> dict[str, int]:
    """Record id -> its fold (stratified by label, seeded) for every training record."""
    from sklearn.model_selection import StratifiedKFold

    ids = split.train
    labels = [split.labels[i] for i in ids]
    assignment = {}
    for fold, (_, held) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(ids, labels)):
        assignment.update({ids[n]: fold for n in held})
    return assignment


def _training_settings(encoder_dir: Path, encoder: Encoder) -> EncoderTrainingConfig:
    """How the run's encoder was trained (its training_config.json), else its preset's settings."""
    path = encoder_dir / TRAINING_CONFIG_NAME
    if path.exists():
        return config_from_dict(EncoderTrainingConfig, json.loads(path.read_text()), str(path))
    return encoder_training_preset(encoder.config.preset, encoder.config.task)


def cross_fitted_verdicts(dataset: CinCDataset, split: Split, encoder_dir: str | Path, folds: int, ecg_tokens: int,
                          ecg_input: str, cache_dir: str | Path, progress: bool = True,
                          device: str | torch.device = "cpu") -> dict[str, float | list[float]]:
    """AF logit (a four-class encoder: its four class logits) of every training record from the fold encoder that did
    not see it (trained on first use, then read from ENCODER/cross_fit/fold_k), computed as the run's encoder computes
    its verdict (`head_logit` on the record's ECG tokens)."""
    from ecgllm.encoder.training import train_encoder

    encoder_dir = Path(encoder_dir)
    run_encoder = load_encoder(encoder_dir)
    settings = _training_settings(encoder_dir, run_encoder)
    assignment = fold_of_training_records(split, folds, settings.seed)
    verdicts: dict[str, float | list[float]] = {}
    for fold in range(folds):
        folder = encoder_dir / FOLDS_DIR / f"fold_{fold}"
        held = [i for i in split.train if assignment[i] == fold]
        if (folder / WEIGHTS_NAME).exists():
            encoder = load_encoder(folder).to(device)
        else:
            logger.info("cross-fitting the verdict: encoder %d of %d, trained without %d training records", fold + 1,
                        folds, len(held))
            without_fold = dataclasses.replace(split, train=[i for i in split.train if assignment[i] != fold])
            encoder = train_encoder(dataset, without_fold, folder, run_encoder.config, settings, progress, str(device))
        tokens = cached_features(encoder, encoder_fingerprint(folder), dataset, held, ecg_tokens, cache_dir, ecg_input,
                                 progress)
        logits = head_logit(encoder, torch.stack([tokens[i] for i in held]))
        verdicts.update(zip(held, logits.float().cpu().tolist()))
    return verdicts
