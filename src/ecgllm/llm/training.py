"""Training the ECG-LLM on Hugging Face accelerate: the same code on a CPU, one GPU or several (`accelerate launch`).

Only the projector and the LoRA weights train. Encoder features and rhythm evidence come from the on-disk cache, so
the frozen CNN runs once per record, not once per step. Every epoch, and with `save_every` every so many optimiser
steps within one, leaves a checkpoint that a stopped run resumes from, ending where an uninterrupted one would.
"""

import dataclasses
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm.auto import tqdm

from ecgllm.data.dataset import CinCDataset
from ecgllm.data.split import Split, subset_ids
from ecgllm.errors import CheckpointError, SettingError
from ecgllm.llm.chat import ChatFormatter
from ecgllm.llm.configuration_ecgllm import TASK_DECISION_WEIGHT, ECGLLMConfig, LLMTrainingConfig
from ecgllm.llm.cross_fit import cross_fitted_verdicts
from ecgllm.llm.data import Example, TrainingCollator, prepare_examples
from ecgllm.llm.modeling_ecgllm import ADAPTER_DIR, ECGLLM, PROJECTOR_NAME
from ecgllm.modeling_utils import save_training_config
from ecgllm.utils import resolve_device

logger = logging.getLogger(__name__)

LOG_NAME = "train_log.csv"
STATE_NAME = "training_state.pt"  # optimiser, schedule and RNG: what resuming needs beyond the weights
# checkpoint_epoch_{e}: after epoch e; checkpoint_epoch_{e}_step_{u}: within epoch e, after u optimiser steps
CHECKPOINT_PATTERN = re.compile(r"checkpoint_epoch_(\d+)(?:_step_(\d+))?$")


def mixed_precision(config: LLMTrainingConfig, device: torch.device) -> str:
    """accelerate's mixed precision for training on `device`: bf16 where the GPU supports it and `config.bf16`."""
    return "bf16" if config.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"


def make_accelerator(config: LLMTrainingConfig, device: str = "auto"):
    """The accelerator for `device` ("auto": CUDA when there is one; under `accelerate launch` each process takes its
    own GPU); bf16 mixed precision where the GPU supports it and `config.bf16` asks for it."""
    from accelerate import Accelerator

    device = resolve_device(device)
    cuda = device.type == "cuda"
    if cuda and device.index is not None and int(os.environ.get("WORLD_SIZE", 1)) == 1:
        torch.cuda.set_device(device)
    # cpu=True matters: under `accelerate launch --multi_gpu` on a CPU machine, a plain Accelerator() silently runs
    # each process alone, without gradient synchronisation.
    accelerator = Accelerator(cpu=not cuda, gradient_accumulation_steps=config.gradient_accumulation_steps,
                              mixed_precision=mixed_precision(config, device))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if accelerator.num_processes != world:
        raise RuntimeError(f"accelerate runs {accelerator.num_processes} process(es) but WORLD_SIZE is {world}")
    if is_sharded(accelerator) and accelerator.state.fsdp_plugin.fsdp_version != 2:
        # PEFT picks the adapter's weights by module name, and FSDP1's wrapper modules rename them: its checkpoints
        # would hold no LoRA weights (seen on an H100; FSDP2 keeps the names).
        raise SettingError("FSDP training needs FSDP2: launch with --fsdp_version 2 (FSDP1 is not supported)")
    return accelerator


def last_checkpoint(out_dir: Path) -> tuple[int, int, Path | None]:
    """The latest complete checkpoint: (epochs done, optimiser steps done in the next epoch, its folder)."""
    found = []
    for path in out_dir.glob("checkpoint_epoch_*"):
        if (match := CHECKPOINT_PATTERN.search(path.name)) and (path / STATE_NAME).is_file():
            epoch, steps = int(match.group(1)), match.group(2)
            found.append(((epoch, 0) if steps is None else (epoch - 1, int(steps)), path))
    if not found:
        return 0, 0, None
    (done, steps), path = max(found)
    return done, steps, path


def remove_step_checkpoints(out_dir: Path, keep: Path | None = None) -> None:
    """Within-epoch checkpoints but `keep`: each one supersedes the last, and an epoch's own supersedes them all."""
    for path in out_dir.glob("checkpoint_epoch_*_step_*"):
        if path != keep and CHECKPOINT_PATTERN.search(path.name):
            shutil.rmtree(path)


def is_sharded(accelerator) -> bool:
    return accelerator.distributed_type.name.startswith("FSDP")


def optimizer_state(accelerator, model, optimizer) -> dict:
    """The optimiser's whole state keyed by parameter name (gathered from the shards under FSDP; every process must
    call this), so that a checkpoint resumes on any number of processes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer.optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_checkpoint(model: ECGLLM, optimizer_state: dict, scheduler, data_rng: list[torch.Tensor], folder: Path,
                    state_dict: dict, processes: int) -> None:
    """Adapter + projector (never the base LM) from the gathered `state_dict`, and the optimiser state of the trainable
    weights only, the schedule and the random states: `data_rng` those of the data generators at the start of the epoch
    the checkpoint resumes in (a resumed epoch draws its batches again and skips those already trained on)."""
    model.save_pretrained(folder, state_dict)
    torch.save({"optimizer": optimizer_state, "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,  # dropout on a GPU
                "data_rng": data_rng, "processes": processes}, folder / STATE_NAME)


def restore_training_state(accelerator, model, optimizer, scheduler, data_generators: list[torch.Generator],
                           folder: Path, steps: int) -> torch.Tensor:
    """Optimiser, schedule and random state from a checkpoint, into the prepared (possibly sharded) objects; the
    weights are loaded before sharding (`ECGLLM.load_trainable`). Returns the global random state to continue from
    (after a within-epoch checkpoint's skipped batches). One saved `steps` into an epoch resumes only on as many
    processes as saved it: each process skips its own share of the epoch's batches."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    state = torch.load(folder / STATE_NAME, weights_only=False)
    saved_by = state.get("processes", accelerator.num_processes)
    if steps and saved_by != accelerator.num_processes:
        raise SettingError(f"{folder}: saved within an epoch by {saved_by} process(es); resume it on as many, or "
                           "delete it to resume from the last epoch's checkpoint")
    set_optimizer_state_dict(model, optimizer.optimizer, state["optimizer"],
                             options=StateDictOptions(full_state_dict=is_sharded(accelerator)))
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and accelerator.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], accelerator.device)
    for generator, saved in zip(data_generators, state["data_rng"], strict=True):
        generator.set_state(saved)
    return state["torch_rng"]


def resume_log(log_path: Path, epoch: int, micro_steps: int) -> list[float]:
    """The training log cut back to where a run resumes (rows a stopped run wrote after its checkpoint would come
    again); returns the losses already logged in the resumed epoch."""
    lines = log_path.read_text().splitlines(keepends=True)
    kept = [line for line in lines[1:] if (int(line.split(",")[0]), int(line.split(",")[2])) <= (epoch, micro_steps)]
    log_path.write_text("".join(lines[:1] + kept))
    return [float(line.split(",")[3]) for line in kept if int(line.split(",")[0]) == epoch]


def save_gathered(accelerator, model, optimizer, scheduler, data_rng: list[torch.Tensor], folder: Path) -> dict:
    """A checkpoint from the state gathered from every process (each must call this: a sharded model's full tensors);
    supersedes the within-epoch ones. Returns the gathered weights."""
    accelerator.wait_for_everyone()
    state, optimizer_saved = accelerator.get_state_dict(model), optimizer_state(accelerator, model, optimizer)
    if accelerator.is_main_process:
        save_checkpoint(accelerator.unwrap_model(model), optimizer_saved, scheduler, data_rng, folder, state,
                        accelerator.num_processes)
        remove_step_checkpoints(folder.parent, keep=folder)
    return state


def checksum(tensors) -> float:
    return float(sum(t.detach().double().sum() for t in tensors))


def verify_saved(accelerator, model: ECGLLM, state: dict[str, torch.Tensor], folder: Path) -> None:
    """What the main process saved equals the gathered trainable weights, and (unsharded) every process holds those
    same weights: a partial or diverged checkpoint fails here instead of being left behind."""
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    sharded = is_sharded(accelerator)
    local = 0.0 if sharded else checksum(p for p in model.parameters() if p.requires_grad)
    sums = accelerator.gather(torch.tensor([local], dtype=torch.float64, device=accelerator.device)).cpu()
    if not accelerator.is_main_process:
        return
    files = {"projector": folder / PROJECTOR_NAME, "lm": folder / ADAPTER_DIR / "adapter_model.safetensors"}
    saved = {part: list(load_file(str(f)).values()) for part, f in files.items()}
    trained = {part: [state[name] for name in trainable if name.startswith(part + ".")] for part in files}
    total = checksum(t for tensors in saved.values() for t in tensors)
    expected = [checksum(state[name] for name in trainable)] + ([] if sharded else sums.tolist())
    if not all(abs(total - value) <= 1e-6 + 1e-9 * abs(total) for value in expected):
        parts = "; ".join(f"{part}: saved {len(saved[part])} tensors, checksum {checksum(saved[part]):.6f}, trained "
                          f"{len(trained[part])}, {checksum(trained[part]):.6f}" for part in files)
        raise CheckpointError(f"{folder}: the saved weights (checksum {total:.6f}) are not the trained ones "
                              f"({expected}; {parts})")
    logger.info("%s: saved weights verified against %d process(es)", folder, accelerator.num_processes)


def feature_noise_std(examples: list[Example], noise: float, feature_dim: int) -> torch.Tensor | None:
    """[D(+R)(+1)] scale of the training noise: `noise` times each of the first `feature_dim` (encoder) features'
    spread over the training examples, zero on what follows them (rhythm figures, verdict). None when there is no
    noise."""
    if noise <= 0:
        return None
    std = torch.stack([e.features for e in examples]).flatten(0, -2).std(0)
    std[feature_dim:] = 0
    return noise * std


def branch_positions(formatter: ChatFormatter, examples: list[Example]) -> list[list[int]]:
    """Where in each class's answer its decision sentence parts from the others (`ChatFormatter.branch_positions`);
    every answer must begin with its own sentence's tokens up to the last of them (the weight of `decision_weight`
    goes there)."""
    positions, sentences = formatter.branch_positions(), formatter.decision_ids()
    for e in examples:
        end = positions[e.label][-1] + 1
        if e.answer_ids[:end] != sentences[e.label][:end]:
            raise ValueError(f"record {e.record}: its answer does not begin with its decision sentence's tokens")
    return positions


def _loader(examples: list[Example], config: LLMTrainingConfig, pad_id: int, feature_dim: int,
            positions: list[list[int]] | None) -> tuple[DataLoader, list[torch.Generator]]:
    """The training batches, and the generators of their draws and noise (saved with a checkpoint, so that a resumed
    run draws what the uninterrupted one would have)."""
    generator = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator().manual_seed(config.seed + 1)
    collate = TrainingCollator(pad_id, feature_noise_std(examples, config.feature_noise, feature_dim), noise,
                               positions, config.decision_weight)
    if config.balance == "oversample":
        labels = np.array([e.label for e in examples])
        counts = np.bincount(labels)
        sampler = WeightedRandomSampler([1.0 / counts[y] for y in labels],
                                        num_samples=config.samples_per_epoch or len(examples), replacement=True,
                                        generator=generator)
        loader = DataLoader(examples, batch_size=config.batch_size, sampler=sampler, collate_fn=collate)
        return loader, [generator, noise]
    if config.balance != "none":
        raise ValueError(f"unknown balance {config.balance!r}; choose none or oversample")
    return (DataLoader(examples, batch_size=config.batch_size, shuffle=True, generator=generator, collate_fn=collate),
            [generator, noise])


def train_llm(dataset: CinCDataset, split: Split, encoder_dir: str | Path, out_dir: str | Path,
              model_config: ECGLLMConfig, config: LLMTrainingConfig, cache_dir: str | Path, progress: bool = True,
              device: str = "auto") -> Path:
    """Train on `device`; writes checkpoint_epoch_{n} (adapter + projector + optimiser state), with `save_every` the
    latest checkpoint_epoch_{n}_step_{u} within an epoch, and `final/`. Resumes from the latest complete checkpoint.
    ECG tokens and rhythm figures are read from (and added to) `cache_dir` (computed by the encoder on the same
    device). Returns the folder of the final model."""
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    out_dir, encoder_dir = Path(out_dir), Path(encoder_dir)
    # The split says the task: a four-class split trains the four decision sentences.
    model_config = dataclasses.replace(model_config, task=split.task)
    if config.decision_weight is None:  # the task's own, written to the training config as used
        config = dataclasses.replace(config, decision_weight=TASK_DECISION_WEIGHT[split.task])
    accelerator = make_accelerator(config, device)
    split.check_against(dataset.labels)
    # FSDP keeps the backbone's shards in float32 (one dtype per shard; its bf16 mixed precision computes in bf16).
    lm_dtype = "float32" if is_sharded(accelerator) else None
    with accelerator.main_process_first():  # a backbone converted or built on first use is made once
        model = ECGLLM.build(model_config, encoder_dir, config.seed, accelerator.device, lm_dtype)
    done, steps_done, checkpoint = last_checkpoint(out_dir)
    if checkpoint is not None:  # the weights go in whole, before they are sharded
        model.load_trainable(checkpoint)
    if config.gradient_checkpointing:  # non-reentrant: the frozen embeddings need no requires_grad hook for PEFT
        model.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    train_ids = subset_ids(split, "train", config.max_train_records, config.seed)
    with accelerator.main_process_first():  # one process fills the caches (and trains fold encoders), others read
        verdicts = None
        if config.verdict_folds and model_config.verdict_input:
            verdicts = cross_fitted_verdicts(dataset, split, encoder_dir, config.verdict_folds, model.config.ecg_tokens,
                                             model.config.ecg_input, cache_dir,
                                             progress and accelerator.is_main_process, accelerator.device)
        examples = prepare_examples(model, dataset, train_ids, cache_dir, progress and accelerator.is_main_process,
                                    verdicts)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_training_config(out_dir, config)

    positions = branch_positions(ChatFormatter(model.tokenizer, model.config), examples) \
        if config.decision_weight != 1.0 else None
    loader, data_generators = _loader(examples, config, model.tokenizer.pad_token_id, model.config.feature_dim,
                                      positions)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    # Counted as on one process: accelerate steps a prepared scheduler once per process at every update.
    updates_per_epoch = math.ceil(len(loader) / config.gradient_accumulation_steps)
    scheduler = get_scheduler(config.schedule, optimizer, num_warmup_steps=config.warmup_steps,
                              num_training_steps=config.epochs * updates_per_epoch)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    # Dropout draws from the global random state: seeded here, after everything that may or may not draw from it
    # (a backbone built on first use, feature caching); a resumed run then restores the state saved with its
    # checkpoint.
    set_seed(config.seed)
    skip = steps_done * config.gradient_accumulation_steps  # micro-batches of the resumed epoch already trained on
    if checkpoint is not None:
        resumed_rng = restore_training_state(accelerator, model, optimizer, scheduler, data_generators, checkpoint,
                                             steps_done)
        logger.info("resuming %s from %s", f"at step {steps_done} of epoch {done + 1}" if steps_done
                    else f"after epoch {done}", checkpoint)
    logger.info("training %s on %d records x %d process(es): %d trainable parameters, %d optimiser steps per epoch",
                model_config.preset, len(examples), accelerator.num_processes, sum(p.numel() for p in trainable),
                math.ceil(updates_per_epoch / accelerator.num_processes))

    log_path = out_dir / LOG_NAME
    write_log = accelerator.is_main_process
    logged = []
    if write_log and not log_path.exists():
        log_path.write_text("epoch,step,micro_step,loss,lr,synced,samples_per_s\n")
    elif write_log and checkpoint is not None:
        logged = resume_log(log_path, done + 1, skip)
    step_every = config.save_every * config.gradient_accumulation_steps
    for epoch in range(done + 1, config.epochs + 1):
        model.train()
        losses, started = logged if epoch == done + 1 else [], time.perf_counter()
        epoch_rng = [g.get_state() for g in data_generators]
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", unit="batch",
                   disable=not (progress and accelerator.is_main_process))
        for micro_step, batch in enumerate(bar, start=1):
            if epoch == done + 1 and micro_step <= skip:  # drawn again, trained on before the stop
                if micro_step == skip:  # starting the epoch's batches drew from the global state: back to the saved
                    torch.set_rng_state(resumed_rng)
                continue
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            loss_value = accelerator.gather(loss.detach()).mean().item()
            losses.append(loss_value)
            accumulated = (micro_step - 1) % config.gradient_accumulation_steps + 1
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}",
                            acc=f"{accumulated}/{config.gradient_accumulation_steps}")
            if write_log:
                trained = micro_step - (skip if epoch == done + 1 else 0)
                rate = trained * config.batch_size * accelerator.num_processes / (time.perf_counter() - started)
                with log_path.open("a") as log:
                    log.write(f"{epoch},{math.ceil(micro_step / config.gradient_accumulation_steps)},{micro_step},"
                              f"{loss_value:.5f},{scheduler.get_last_lr()[0]:.3g},{int(accelerator.sync_gradients)},"
                              f"{rate:.2f}\n")
            if step_every and micro_step % step_every == 0 and micro_step < len(loader):
                step = micro_step // config.gradient_accumulation_steps
                save_gathered(accelerator, model, optimizer, scheduler, epoch_rng,
                              out_dir / f"checkpoint_epoch_{epoch}_step_{step}")
        logger.info("epoch %d: average loss %.4f (%.0f s)", epoch, np.mean(losses), time.perf_counter() - started)
        state = save_gathered(accelerator, model, optimizer, scheduler, [g.get_state() for g in data_generators],
                              out_dir / f"checkpoint_epoch_{epoch}")
    accelerator.wait_for_everyone()
    final = out_dir / "final"
    if done >= config.epochs:  # resumed after the last epoch: nothing was gathered above
        state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(final, state)
    accelerator.wait_for_everyone()
    verify_saved(accelerator, accelerator.unwrap_model(model), state, final)
    return final
