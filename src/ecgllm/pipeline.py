"""The main job, `ecgllm run`: split -> encoder -> encoder evaluation -> LLM -> LLM evaluation and comparison.

Each stage is skipped when its output exists, so a stopped run resumes where it stopped.
"""

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ecgllm.data.dataset import CinCDataset, load_cinc_folder
from ecgllm.data.split import Split, make_split, subset_ids
from ecgllm.encoder.configuration_mscnn import ENCODER_PRESETS
from ecgllm.encoder.evaluate import evaluate_encoder, format_encoder_result
from ecgllm.encoder.modeling_mscnn import MSCNN
from ecgllm.encoder.training import TRAINING_PRESETS, train_encoder
from ecgllm.errors import CheckpointError
from ecgllm.modeling_utils import CONFIG_NAME, WEIGHTS_NAME

logger = logging.getLogger(__name__)

# A run preset names an encoder preset and an LLM preset.
RUN_PRESETS = {"smoke": ("smoke", "smoke"), "cpu": ("cpu", "cpu"), "qwen3-8b": ("paper", "qwen3-8b")}


@dataclass
class RunLayout:
    """Where each stage of a run folder writes."""

    root: Path
    llm_name: str = "llm"  # an LLM variant trained beside the default one, e.g. "llm_whole"

    @property
    def manifest(self) -> Path:
        """run.json: what the run was made from (data folder, preset, seed)."""
        return self.root / "run.json"

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    @property
    def encoder(self) -> Path:
        return self.root / "encoder"

    @property
    def encoder_eval(self) -> Path:
        return self.root / "encoder" / "eval"

    @property
    def llm(self) -> Path:
        return self.root / self.llm_name

    @property
    def llm_final(self) -> Path:
        return self.llm / "final"

    @property
    def llm_eval(self) -> Path:
        return self.llm / "eval"

    @property
    def cache(self) -> Path:
        return self.root / "cache"


def resolve_model_dir(path: str | Path) -> Path:
    """A trained ECG-LLM folder, given either itself or the run folder that holds it (RUN/llm/final)."""
    path = Path(path)
    if (path / CONFIG_NAME).exists():
        return path
    if (RunLayout(path).llm_final / CONFIG_NAME).exists():
        return RunLayout(path).llm_final
    raise CheckpointError(f"{path}: neither a trained ECG-LLM folder (config.json) nor a run folder with "
                          f"llm/final")


def evaluate_llm_folder(model_dir: Path, dataset: CinCDataset, split: Split, out_dir: Path, cache_dir: Path,
                        encoder_eval_dir: Path | None, batch_size: int, max_new_tokens: int,
                        max_records: int | None = None, seed: int = 42, progress: bool = True) -> dict:
    """Load a trained ECG-LLM, evaluate it (threshold from validation) and store the threshold in its config."""
    from ecgllm.llm.data import prepare_examples
    from ecgllm.llm.evaluate import evaluate_llm
    from ecgllm.llm.modeling_ecgllm import ECGLLM
    from ecgllm.modeling_utils import save_config

    model = ECGLLM.from_pretrained(model_dir)
    val = prepare_examples(model, dataset, subset_ids(split, "val", max_records, seed), cache_dir, progress)
    test = prepare_examples(model, dataset, subset_ids(split, "test", max_records, seed), cache_dir, progress)
    result = evaluate_llm(model, val, test, out_dir, batch_size, max_new_tokens, encoder_eval_dir, progress=progress)
    save_config(model.config, model_dir / CONFIG_NAME, "ecgllm")
    return result


def run(data_dir: str | Path, out_dir: str | Path, preset: str = "cpu", seed: int = 42, lm: str | None = None,
        progress: bool = True) -> dict:
    """Run every stage that has no output yet; rerunning a finished run only re-reads its results."""
    from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
    from ecgllm.llm.evaluate import format_llm_result
    from ecgllm.llm.training import train_llm

    if preset not in RUN_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(RUN_PRESETS)}")
    encoder_preset, llm_preset = RUN_PRESETS[preset]
    layout = RunLayout(Path(out_dir))
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.manifest.write_text(json.dumps({"data": str(Path(data_dir).resolve()), "preset": preset, "seed": seed,
                                           "lm": lm}, indent=2))
    dataset = load_cinc_folder(data_dir, task="binary", progress=progress)
    logger.info("%s", dataset.report())

    if layout.split.exists():
        split = Split.load(layout.split)
        logger.info("reusing split %s: %s", layout.split, split.summary())
    else:
        split = make_split(dataset.labels, "binary", seed)
        split.save(layout.split)
        logger.info("wrote split %s: %s", layout.split, split.summary())

    if (layout.encoder / WEIGHTS_NAME).exists():
        encoder = MSCNN.from_pretrained(layout.encoder)
        logger.info("reusing encoder %s", layout.encoder)
    else:
        encoder = train_encoder(dataset, split, layout.encoder, ENCODER_PRESETS[encoder_preset],
                                TRAINING_PRESETS[encoder_preset], progress)
    encoder_metrics = layout.encoder_eval / "metrics.json"
    if encoder_metrics.exists():
        encoder_result = json.loads(encoder_metrics.read_text())
    else:
        encoder_result = evaluate_encoder(encoder, dataset, split, layout.encoder_eval, progress=progress)
    logger.info("\n%s", format_encoder_result(encoder_result))

    model_config, train_config = LLM_PRESETS[llm_preset]
    if lm is not None:
        model_config = dataclasses.replace(model_config, lm=lm)
    if not (layout.llm_final / CONFIG_NAME).exists():
        train_llm(dataset, split, layout.encoder, layout.llm, model_config, train_config, layout.cache, progress)
    llm_metrics = layout.llm_eval / "metrics.json"
    if llm_metrics.exists():
        llm_result = json.loads(llm_metrics.read_text())
    else:
        llm_result = evaluate_llm_folder(layout.llm_final, dataset, split, layout.llm_eval, layout.cache,
                                         layout.encoder_eval, train_config.eval_batch_size, train_config.max_new_tokens,
                                         train_config.max_eval_records, seed, progress)
    logger.info("\n%s", format_llm_result(llm_result))
    return {"encoder": encoder_result, "llm": llm_result}
