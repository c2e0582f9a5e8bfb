"""Training the MS-CNN: class oversampling, augmentation, best epoch by validation PR AUC of AF (four-class task: by
the validation challenge score), decision thresholds (class offsets, kept only if they carry to held-out halves) from
validation; optionally a moving average of the weights in their place, or an ensemble of MS-CNNs trained one after
the other. On a CUDA GPU the forward and backward passes run in bf16 autocast (the weights and optimiser stay
float32). Every finished epoch leaves a checkpoint that a stopped training resumes from, ending where an uninterrupted
one would."""

import csv
import dataclasses
import json
import logging
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from tqdm.auto import tqdm

from ecgllm.data.dataset import CinCDataset
from ecgllm.data.labels import task_labels
from ecgllm.data.preprocess import MIN_DIAGNOSIS_SECONDS, MODES, AugmentConfig, augment_crop, zscore
from ecgllm.data.split import Split, subset_ids
from ecgllm.encoder.configuration_mscnn import EncoderTrainingConfig, MSCNNConfig
from ecgllm.encoder.modeling_mscnn import MSCNN, Encoder, MSCNNEnsemble, load_encoder
from ecgllm.encoder.predict import predict_records
from ecgllm.errors import CheckpointError, SettingError
from ecgllm.evaluation.four_class import af_score, challenge_score, choose_checked_offsets, log_probabilities
from ecgllm.evaluation.metrics import binary_metrics, choose_threshold
from ecgllm.modeling_utils import (
    TRAINING_CONFIG_NAME,
    WEIGHTS_NAME,
    config_from_dict,
    config_to_dict,
    save_training_config,
)
from ecgllm.utils import HOST_NAME, resolve_device, seed_everything

logger = logging.getLogger(__name__)

HISTORY_NAME = "history.csv"
CHECKPOINT_NAME = "checkpoint.pt"  # the last finished epoch's training state; removed once the model is saved
MEMBERS_DIR = "members"  # an ensemble's members as each was trained: ENCODER/members/{k}


class RandomCropDataset(Dataset):
    """Training examples: a fresh random (augmented) crop of the whole z-scored record at every draw."""

    def __init__(self, signals: list[np.ndarray], labels: list[int], window: int, shortest: int,
                 augment: AugmentConfig, seed: int, label_dtype: torch.dtype = torch.float32):
        self.signals = [zscore(s) for s in signals]
        self.labels = labels
        self.label_dtype = label_dtype  # float for the binary logit's loss, class indices for cross-entropy
        self.window = window
        self.shortest = shortest  # samples of the shortest short crop
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int):
        crop = augment_crop(self.signals[index], self.window, self.augment, self.rng, self.shortest)
        return torch.from_numpy(crop).unsqueeze(0), torch.tensor(self.labels[index], dtype=self.label_dtype)


def _loader(dataset: CinCDataset, ids: list[str], model_config: MSCNNConfig, config: EncoderTrainingConfig):
    labels = [dataset.labels[i] for i in ids]
    label_dtype = torch.float32 if model_config.task == "binary" else torch.long
    pre = model_config.preprocess
    shortest = int(round(MIN_DIAGNOSIS_SECONDS * pre.fs))
    data = RandomCropDataset(dataset.signals(ids, pre.fs), labels, pre.window, shortest, config.augment, config.seed,
                             label_dtype)
    generator = torch.Generator().manual_seed(config.seed)
    if config.balance == "oversample":
        counts = np.bincount(labels, minlength=len(task_labels(model_config.task)))
        weights = [1.0 / counts[y] for y in labels]
        sampler = WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)
        return DataLoader(data, batch_size=config.batch_size, sampler=sampler, drop_last=True)
    return DataLoader(data, batch_size=config.batch_size, shuffle=True, generator=generator, drop_last=True)


def train_encoder(dataset: CinCDataset, split: Split, out_dir: str | Path, model_config: MSCNNConfig,
                  config: EncoderTrainingConfig, progress: bool = True, device: str = "auto") -> Encoder:
    """Train on `device`, keep the epoch with the best validation score, set the decision rule on validation, save to
    `out_dir`. With `config.members` > 1, member k is trained so with seed + k into ENCODER/members/k (a stopped
    training resumes in the member it stopped in; finished members are read back), and the members are saved as one
    `MSCNNEnsemble` with its own decision rule. Returns the model on that device."""
    model_config = dataclasses.replace(model_config, members=1)
    if config.members == 1:
        return _train_member(dataset, split, Path(out_dir), model_config, config, progress, device)
    out_dir = Path(out_dir)
    members = [_finished_member(out_dir / MEMBERS_DIR / str(k), dataclasses.replace(config, members=1,
                                                                                    seed=config.seed + k),
                                dataset, split, model_config, progress, device)
               for k in range(config.members)]
    ensemble = MSCNNEnsemble(dataclasses.replace(model_config, members=config.members))
    ensemble.to(next(members[0].parameters()).device)
    for slot, member in zip(ensemble.members, members):
        slot.load_state_dict(member.state_dict())
    val_ids = subset_ids(split, "val", config.max_records, config.seed)
    ensemble.config = choose_decision_rule(ensemble, dataset.signals(val_ids, model_config.preprocess.fs),
                                           np.array([dataset.labels[i] for i in val_ids]),
                                           config.offset_check_repeats, config.eval_batch_size)
    ensemble.save_pretrained(out_dir)
    save_training_config(out_dir, config)
    logger.info("ensemble of %d MS-CNNs; decision rule from validation: thresholds %s, class offsets %s; saved to %s",
                config.members, ensemble.config.thresholds, ensemble.config.class_offsets, out_dir)
    return ensemble.eval()


def _finished_member(folder: Path, config: EncoderTrainingConfig, dataset: CinCDataset, split: Split,
                     model_config: MSCNNConfig, progress: bool, device: str) -> MSCNN:
    """One member of an ensemble: read back if it was trained with these settings, otherwise trained (or resumed)."""
    if not (folder / WEIGHTS_NAME).exists():
        return _train_member(dataset, split, folder, model_config, config, progress, device)
    path = folder / TRAINING_CONFIG_NAME
    if config_from_dict(EncoderTrainingConfig, json.loads(path.read_text()), str(path)) != config:
        raise CheckpointError(f"{folder}: a member trained with other settings; train the ensemble with the same "
                              "ones, or delete the folder to train it again")
    logger.info("reusing ensemble member %s", folder)
    return MSCNN.from_pretrained(folder).to(resolve_device(device))


def _train_member(dataset: CinCDataset, split: Split, out_dir: Path, model_config: MSCNNConfig,
                  config: EncoderTrainingConfig, progress: bool, device: str) -> MSCNN:
    """One MS-CNN, trained as `train_encoder` says."""
    device = resolve_device(device)
    split.require_task(model_config.task, "this MS-CNN")
    split.check_against(dataset.labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)

    train_ids = subset_ids(split, "train", config.max_records, config.seed)
    val_ids = subset_ids(split, "val", config.max_records, config.seed)
    val_signals = dataset.signals(val_ids, model_config.preprocess.fs)
    val_labels = np.array([dataset.labels[i] for i in val_ids])
    loader = _loader(dataset, train_ids, model_config, config)

    model = MSCNN(model_config).to(device)  # drawn on the CPU first: the same initial weights on every device
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                    total_steps=config.epochs * len(loader), pct_start=0.1)
    loss_fn = _loss(np.array([dataset.labels[i] for i in train_ids]), model_config.task, config.balance, device)
    # With ema_decay, the moving average (batch-norm statistics included) is what is validated and kept: it depends
    # less than one epoch's last weights on the last few batches.
    averaged = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
                if config.ema_decay else None)
    validated = model if averaged is None else averaged.module
    training = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    if averaged is not None:
        training["averaged"] = averaged
    identity = {"config": config_to_dict(config), "model_config": config_to_dict(model_config), "train": train_ids,
                "val": val_ids}

    best_score, best_epoch, best_state, done = -1.0, 0, None, 0
    checkpoint = out_dir / CHECKPOINT_NAME
    if checkpoint.exists():
        done, best_score, best_epoch, best_state = _resume(checkpoint, identity, training, loader)
        logger.info("resuming after epoch %d of %d from %s", done, config.epochs, checkpoint)
    save_training_config(out_dir, config)
    logger.info("training MS-CNN %s (%d parameters) on %d records, validating on %d, on %s", model_config.preset,
                sum(p.numel() for p in model.parameters()), len(train_ids), len(val_ids), device)
    with _history(out_dir / HISTORY_NAME, done, model_config.task) as history_file:
        history = csv.writer(history_file)
        for epoch in range(done + 1, config.epochs + 1):
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
                if averaged is not None:
                    averaged.update_parameters(model)
                losses.append(loss.item())
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            seconds = time.perf_counter() - started
            val_probabilities = predict_records(validated, val_signals, "center", config.eval_batch_size)
            val, score = _validate(val_probabilities, val_labels)
            history.writerow([epoch, f"{np.mean(losses):.5f}", *(f"{v:.5f}" for v in val.values()),
                              f"{scheduler.get_last_lr()[0]:.3g}", f"{seconds:.1f}",
                              f"{len(losses) * config.batch_size / seconds:.1f}"])
            history_file.flush()
            logger.info("epoch %d: loss %.4f, validation %s (%.0f s)", epoch, np.mean(losses),
                        ", ".join(f"{k} {v:.4f}" for k, v in val.items()), seconds)
            if score > best_score:
                best_score, best_epoch = score, epoch
                best_state = {k: v.detach().clone() for k, v in validated.state_dict().items()}
            elif epoch - best_epoch >= config.patience:
                logger.info("stopping early: no better validation score since epoch %d", best_epoch)
                break
            _save_checkpoint(checkpoint, identity, training, loader,
                             {"epoch": epoch, "best_score": best_score, "best_epoch": best_epoch,
                              "best_state": best_state})

    model.load_state_dict(best_state)
    model.config = choose_decision_rule(model, val_signals, val_labels, config.offset_check_repeats,
                                        config.eval_batch_size)
    model.save_pretrained(out_dir)
    logger.info("best epoch %d (validation score %.4f); decision rule from validation: thresholds %s, class offsets "
                "%s; saved to %s", best_epoch, best_score, model.config.thresholds, model.config.class_offsets,
                out_dir)
    checkpoint.unlink(missing_ok=True)
    return model.eval()


def choose_decision_rule(model: Encoder, val_signals: list[np.ndarray], val_labels: np.ndarray,
                         offset_check_repeats: int, batch_size: int = 256) -> MSCNNConfig:
    """The model's config with its decision rule chosen on validation, per mode: the binary task's threshold on P(AF);
    the four-class task's offsets on log P, kept only if offsets chosen on half of validation raise the other half's
    challenge score (`choose_checked_offsets`, with the check's findings)."""
    probabilities = {mode: predict_records(model, val_signals, mode, batch_size) for mode in MODES}
    if model.config.task == "binary":
        return dataclasses.replace(model.config, thresholds={mode: choose_threshold(val_labels, p)
                                                             for mode, p in probabilities.items()})
    rules = {mode: choose_checked_offsets(val_labels, log_probabilities(p), offset_check_repeats)
             for mode, p in probabilities.items()}
    return dataclasses.replace(
        model.config, class_offsets={mode: rule["offsets"] for mode, rule in rules.items()},
        class_offset_checks={mode: rule["check"] for mode, rule in rules.items()})


def calibrate_encoder(model_dir: str | Path, out_dir: str | Path, dataset: CinCDataset, split: Split,
                      offset_check_repeats: int, device: str = "auto") -> Encoder:
    """A trained encoder with its decision rule chosen again on its validation split under the current rule (an
    encoder trained before offsets were checked gets checked offsets), saved to `out_dir` with the files that say how
    it was trained. The original is left as it is: an ECG-LLM built on it knows it by its config too."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.resolve() == model_dir.resolve():
        raise SettingError(f"{out_dir}: write the calibrated encoder beside the original, not over it")
    model = load_encoder(model_dir).to(resolve_device(device))
    split.require_task(model.config.task, "this MS-CNN")
    split.check_against(dataset.labels)
    val_labels = np.array([dataset.labels[i] for i in split.val])
    model.config = choose_decision_rule(model, dataset.signals(split.val, model.config.preprocess.fs), val_labels,
                                        offset_check_repeats)
    model.save_pretrained(out_dir)
    for name in (TRAINING_CONFIG_NAME, HISTORY_NAME, HOST_NAME):
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, out_dir / name)
    logger.info("decision rule chosen again on %d validation records: thresholds %s, class offsets %s (checks %s); "
                "saved to %s", len(val_labels), model.config.thresholds, model.config.class_offsets,
                model.config.class_offset_checks, out_dir)
    return model


def _loss(train_labels: np.ndarray, task: str, balance: str, device: torch.device) -> torch.nn.Module:
    """Binary cross-entropy on the AF logit, or cross-entropy over the classes; with balance "weight", each class
    weighted by its rarity."""
    if task == "binary":
        pos_weight = None
        if balance == "weight":
            pos_weight = torch.tensor((train_labels == 0).sum() / max(1, (train_labels == 1).sum()), device=device)
        return torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    weight = None
    if balance == "weight":
        counts = np.maximum(np.bincount(train_labels, minlength=len(task_labels(task))), 1)
        weight = torch.tensor(len(train_labels) / (len(counts) * counts), dtype=torch.float32, device=device)
    return torch.nn.CrossEntropyLoss(weight=weight)


def _validate(probabilities: np.ndarray, labels: np.ndarray) -> tuple[dict[str, float], float]:
    """An epoch's validation figures (for the history) and the score that picks the best epoch: PR AUC of AF at the
    binary task, the challenge score (at the plain argmax) at the four-class task."""
    if probabilities.ndim == 1:
        val = binary_metrics(labels, probabilities, choose_threshold(labels, probabilities))
        return {"roc_auc": val["roc_auc"], "pr_auc": val["pr_auc"], "best_f1": val["f1"]}, val["pr_auc"]
    log_p = log_probabilities(probabilities)
    af = binary_metrics(labels == 1, af_score(log_p), 0.0)
    score = challenge_score(labels, log_p.argmax(1))
    return {"roc_auc": af["roc_auc"], "pr_auc": af["pr_auc"], "challenge_score": score}, score


def _random_state(loader: DataLoader) -> dict:
    """Every random state an epoch draws from: dropout and the loader's base seed (torch's), the draws of records
    (the sampler's generator) and of their crops (the dataset's)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np.random.get_state(), "python": random.getstate(),
            "sampler": loader.sampler.generator.get_state(), "crops": loader.dataset.rng.bit_generator.state}


def _set_random_state(loader: DataLoader, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    loader.sampler.generator.set_state(state["sampler"])
    loader.dataset.rng.bit_generator.state = state["crops"]


def _save_checkpoint(path: Path, identity: dict, training: dict, loader: DataLoader, progress: dict) -> None:
    """Written beside and then renamed over the last one, so that a stop while saving leaves the previous epoch's."""
    state = {**identity, **progress, "random": _random_state(loader),
             **{name: part.state_dict() for name, part in training.items()}}
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def _resume(path: Path, identity: dict, training: dict, loader: DataLoader) -> tuple[int, float, int, dict]:
    """Loads a checkpoint's training state into `training` and the random states; returns the epochs done and the
    best epoch so far (score, epoch, weights). A checkpoint of other settings or records is an error, not a restart."""
    try:
        state = torch.load(path, weights_only=False, map_location="cpu")
    except Exception as error:  # torch raises several kinds for a damaged file
        raise CheckpointError(f"{path}: not a readable training checkpoint ({error}); delete it to train from the "
                              "start") from error
    differs = [name for name, value in identity.items() if state.get(name) != value]
    if differs:
        raise CheckpointError(f"{path}: a checkpoint of a training with other {' and '.join(differs)}; train with "
                              "the same ones to resume, or delete it to train from the start")
    for name, part in training.items():
        part.load_state_dict(state[name])
    _set_random_state(loader, state["random"])
    return state["epoch"], state["best_score"], state["best_epoch"], state["best_state"]


def _history(path: Path, done: int, task: str):
    """The history file opened for the epochs to come: a resumed training keeps the rows of the epochs it resumes
    after (a stop between a row and its checkpoint leaves one more, which is dropped)."""
    kept = [["epoch", "train_loss", "val_roc_auc", "val_pr_auc",
             "val_best_f1" if task == "binary" else "val_challenge_score", "lr", "seconds", "samples_per_s"]]
    if done and path.exists():
        with path.open(newline="") as existing:
            kept = list(csv.reader(existing))[:done + 1] or kept
    history_file = path.open("w", newline="")
    csv.writer(history_file).writerows(kept)
    return history_file
