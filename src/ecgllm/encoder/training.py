"""Training the MS-CNN: AF oversampling, augmentation, best epoch by validation PR AUC, thresholds from validation.
On a CUDA GPU the forward and backward passes run in bf16 autocast (the weights and optimiser stay float32)."""

import csv
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from tqdm.auto import tqdm

from ecgllm.data.dataset import CinCDataset
from ecgllm.data.preprocess import MODES, AugmentConfig, augment_crop, zscore
from ecgllm.data.split import Split, subset_ids
from ecgllm.encoder.configuration_mscnn import EncoderTrainingConfig, MSCNNConfig
from ecgllm.encoder.modeling_mscnn import MSCNN
from ecgllm.encoder.predict import predict_records
from ecgllm.evaluation.metrics import binary_metrics, choose_threshold
from ecgllm.modeling_utils import config_to_dict
from ecgllm.utils import resolve_device, seed_everything

logger = logging.getLogger(__name__)

TRAINING_CONFIG_NAME = "training_config.json"
HISTORY_NAME = "history.csv"


class RandomCropDataset(Dataset):
    """Training examples: a fresh random (augmented) crop of the whole z-scored record at every draw."""

    def __init__(self, signals: list[np.ndarray], labels: list[int], window: int, augment: AugmentConfig, seed: int):
        self.signals = [zscore(s) for s in signals]
        self.labels = labels
        self.window = window
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int):
        crop = augment_crop(self.signals[index], self.window, self.augment, self.rng)
        return torch.from_numpy(crop).unsqueeze(0), torch.tensor(float(self.labels[index]))


def _loader(dataset: CinCDataset, ids: list[str], model_config: MSCNNConfig, config: EncoderTrainingConfig):
    labels = [dataset.labels[i] for i in ids]
    data = RandomCropDataset([dataset.records[i].signal for i in ids], labels, model_config.preprocess.window,
                             config.augment, config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if config.balance == "oversample":
        counts = np.bincount(labels, minlength=2)
        weights = [1.0 / counts[y] for y in labels]
        sampler = WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)
        return DataLoader(data, batch_size=config.batch_size, sampler=sampler, drop_last=True)
    return DataLoader(data, batch_size=config.batch_size, shuffle=True, generator=generator, drop_last=True)


def train_encoder(dataset: CinCDataset, split: Split, out_dir: str | Path, model_config: MSCNNConfig,
                  config: EncoderTrainingConfig, progress: bool = True, device: str = "auto") -> MSCNN:
    """Train on `device`, keep the epoch with the best validation PR AUC, set thresholds on validation, save to
    `out_dir`. Returns the model on that device."""
    out_dir = Path(out_dir)
    device = resolve_device(device)
    split.require_task(model_config.task, "this MS-CNN")
    split.check_against(dataset.labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    (out_dir / TRAINING_CONFIG_NAME).write_text(json.dumps(config_to_dict(config), indent=2))

    train_ids = subset_ids(split, "train", config.max_records, config.seed)
    val_ids = subset_ids(split, "val", config.max_records, config.seed)
    val_signals = [dataset.records[i].signal for i in val_ids]
    val_labels = np.array([dataset.labels[i] for i in val_ids])
    loader = _loader(dataset, train_ids, model_config, config)

    model = MSCNN(model_config).to(device)  # drawn on the CPU first: the same initial weights on every device
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                    total_steps=config.epochs * len(loader), pct_start=0.1)
    train_labels = np.array([dataset.labels[i] for i in train_ids])
    pos_weight = None
    if config.balance == "weight":
        pos_weight = torch.tensor((train_labels == 0).sum() / max(1, (train_labels == 1).sum()), device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    logger.info("training MS-CNN %s (%d parameters) on %d records, validating on %d, on %s", model_config.preset,
                sum(p.numel() for p in model.parameters()), len(train_ids), len(val_ids), device)
    best_score, best_epoch, best_state = -1.0, 0, None
    with (out_dir / HISTORY_NAME).open("w", newline="") as history_file:
        history = csv.writer(history_file)
        history.writerow(["epoch", "train_loss", "val_roc_auc", "val_pr_auc", "val_best_f1", "lr", "seconds",
                          "samples_per_s"])
        for epoch in range(1, config.epochs + 1):
            model.train()
            started, losses = time.perf_counter(), []
            bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=not progress)
            for x, y in bar:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with autocast:
                    logits = model(x)
                loss = loss_fn(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            seconds = time.perf_counter() - started
            probabilities = predict_records(model, val_signals, "center", config.eval_batch_size)
            threshold = choose_threshold(val_labels, probabilities)
            val = binary_metrics(val_labels, probabilities, threshold)
            history.writerow([epoch, f"{np.mean(losses):.5f}", f"{val['roc_auc']:.5f}", f"{val['pr_auc']:.5f}",
                              f"{val['f1']:.5f}", f"{scheduler.get_last_lr()[0]:.3g}", f"{seconds:.1f}",
                              f"{len(losses) * config.batch_size / seconds:.1f}"])
            history_file.flush()
            logger.info("epoch %d: loss %.4f, val ROC AUC %.4f, PR AUC %.4f, best F1 %.4f (%.0f s)", epoch,
                        np.mean(losses), val["roc_auc"], val["pr_auc"], val["f1"], seconds)
            if val["pr_auc"] > best_score:
                best_score, best_epoch = val["pr_auc"], epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif epoch - best_epoch >= config.patience:
                logger.info("stopping early: no better validation PR AUC since epoch %d", best_epoch)
                break

    model.load_state_dict(best_state)
    thresholds = {mode: choose_threshold(val_labels, predict_records(model, val_signals, mode, config.eval_batch_size))
                  for mode in MODES}
    model.config = dataclasses.replace(model.config, thresholds=thresholds)
    model.save_pretrained(out_dir)
    logger.info("best epoch %d (val PR AUC %.4f); thresholds from validation %s; saved to %s", best_epoch, best_score,
                thresholds, out_dir)
    return model.eval()
