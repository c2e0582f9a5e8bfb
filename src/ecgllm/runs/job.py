"""The main job, `ecgllm run`: split -> encoder -> encoder evaluation -> LLM -> LLM evaluation and comparison, for
the four CinC classes (task "four": N, A, O, ~) or for N vs A alone (task "binary", the SPEC's protocol).

Each stage is skipped when its output exists, so a stopped run resumes where it stopped.
"""

import dataclasses
import json
import logging
from pathlib import Path

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.split import Split, make_split
from ecgllm.encoder.configuration_mscnn import encoder_model_preset, encoder_training_preset
from ecgllm.encoder.evaluate import evaluate_encoder, format_encoder_result
from ecgllm.encoder.modeling_mscnn import load_encoder
from ecgllm.encoder.training import train_encoder
from ecgllm.llm.backbones import resolve_dtype
from ecgllm.llm.configuration_ecgllm import LLM_PRESETS, llm_training_preset
from ecgllm.llm.evaluate import evaluate_model_folder, format_llm_result
from ecgllm.llm.training import mixed_precision, train_llm
from ecgllm.modeling_utils import CONFIG_NAME, WEIGHTS_NAME
from ecgllm.runs.layout import RunLayout
from ecgllm.utils import resolve_device

logger = logging.getLogger(__name__)

# A run preset names an encoder preset and an LLM preset.
RUN_PRESETS = {"smoke": ("smoke", "smoke"), "cpu": ("cpu", "cpu"), "qwen3-8b": ("paper", "qwen3-8b")}


def evaluate_run_llm(model_dir: Path, dataset, split: Split, out_dir: Path | None = None, cache_dir: Path | None = None,
                     encoder_eval_dir: Path | None = None, settings: dict | None = None, seed: int = 42,
                     progress: bool = True, device: str = "auto") -> tuple[dict, Path]:
    """Evaluate a run's trained model folder; results, cache and the Task 1 comparison default to the run's own
    places (RUN/llm/eval, RUN/cache, RUN/encoder/eval). Returns the result and where it was written."""
    layout = RunLayout.of_model_dir(model_dir)
    out_dir = out_dir or layout.llm_eval
    result = evaluate_model_folder(model_dir, dataset, split, out_dir, cache_dir or layout.cache, settings,
                                   encoder_eval_dir or layout.encoder_eval, seed, progress, device)
    return result, out_dir


def run(data_dir: str | Path, out_dir: str | Path, preset: str = "cpu", seed: int = 42, lm: str | None = None,
        evaluation: dict | None = None, progress: bool = True, device: str = "auto", task: str = "four") -> dict:
    """Run every stage that has no output yet, each on `device` ("auto": CUDA when there is one); rerunning a
    finished run only re-reads its results. `task` is "four" (N, A, O, ~) or "binary" (N vs A: the SPEC's protocol,
    whose binary split sits unchanged inside the four-class split of the same seed). `seed` is the seed of every
    stage: the split, the encoder's training and the LLM's. `evaluation` overrides the LLM evaluation settings of the
    preset (e.g. {"generate": False} to score only)."""
    if preset not in RUN_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(RUN_PRESETS)}")
    encoder_preset, llm_preset = RUN_PRESETS[preset]
    model_config = LLM_PRESETS[llm_preset][0]
    train_config = dataclasses.replace(llm_training_preset(llm_preset, task), seed=seed)
    if lm is not None:
        model_config = dataclasses.replace(model_config, lm=lm)
    device = resolve_device(device)
    layout = RunLayout(Path(out_dir))
    layout.root.mkdir(parents=True, exist_ok=True)
    precision = {"device": str(device), "lm_weights": str(resolve_dtype(model_config.lm_dtype, device)),
                 "training_mixed_precision": mixed_precision(train_config, device),
                 "encoder_training": "bf16 autocast" if device.type == "cuda" else "float32"}
    dataset = load_cinc_folder(data_dir, task=task, progress=progress)
    logger.info("%s", dataset.report())

    if layout.split.exists():
        split = Split.load(layout.split)
        split.require_task(task, f"this run ({layout.root})")
        logger.info("reusing split %s: %s", layout.split, split.summary())
    else:
        split = make_split(dataset.labels, task, seed)
        split.save(layout.split)
        logger.info("wrote split %s: %s", layout.split, split.summary())
    layout.manifest.write_text(json.dumps({"data": str(Path(data_dir).resolve()), "task": task, "preset": preset,
                                           "seed": seed, "lm": lm, "precision": precision}, indent=2))

    if (layout.encoder / WEIGHTS_NAME).exists():
        encoder = load_encoder(layout.encoder).to(device)
        logger.info("reusing encoder %s", layout.encoder)
    else:
        encoder = train_encoder(dataset, split, layout.encoder,
                                encoder_model_preset(encoder_preset, task),
                                dataclasses.replace(encoder_training_preset(encoder_preset, task), seed=seed), progress,
                                device)
    encoder_metrics = layout.encoder_eval / "metrics.json"
    if encoder_metrics.exists():
        encoder_result = json.loads(encoder_metrics.read_text())
    else:
        encoder_result = evaluate_encoder(encoder, dataset, split, layout.encoder_eval, progress=progress)
    logger.info("\n%s", format_encoder_result(encoder_result))

    if not (layout.llm_final / CONFIG_NAME).exists():
        train_llm(dataset, split, layout.encoder, layout.llm, model_config, train_config, layout.cache, progress,
                  device)
    llm_metrics = layout.llm_eval / "metrics.json"
    if llm_metrics.exists():
        llm_result = json.loads(llm_metrics.read_text())
    else:
        llm_result, _ = evaluate_run_llm(layout.llm_final, dataset, split, settings=evaluation, seed=seed,
                                         progress=progress, device=device)
    logger.info("\n%s", format_llm_result(llm_result))
    return {"encoder": encoder_result, "llm": llm_result}
