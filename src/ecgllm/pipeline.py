"""The main job, `ecgllm run`: split -> encoder -> evaluation, each stage skipped when its output exists."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ecgllm.data.dataset import load_cinc_folder
from ecgllm.data.split import Split, make_split
from ecgllm.encoder.configuration_mscnn import ENCODER_PRESETS
from ecgllm.encoder.evaluate import evaluate_encoder, format_encoder_result
from ecgllm.encoder.modeling_mscnn import MSCNN
from ecgllm.encoder.training import TRAINING_PRESETS, train_encoder
from ecgllm.modeling_utils import WEIGHTS_NAME

logger = logging.getLogger(__name__)


@dataclass
class RunLayout:
    """Where each stage of a run folder writes."""

    root: Path

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    @property
    def encoder(self) -> Path:
        return self.root / "encoder"

    @property
    def encoder_eval(self) -> Path:
        return self.root / "encoder" / "eval"


def run(data_dir: str | Path, out_dir: str | Path, preset: str = "cpu", seed: int = 42, progress: bool = True) -> dict:
    """Run every stage that has no output yet; rerunning a finished run only re-reads its results."""
    if preset not in ENCODER_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(ENCODER_PRESETS)}")
    layout = RunLayout(Path(out_dir))
    layout.root.mkdir(parents=True, exist_ok=True)
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
        encoder = train_encoder(dataset, split, layout.encoder, ENCODER_PRESETS[preset], TRAINING_PRESETS[preset],
                                progress)

    metrics_path = layout.encoder_eval / "metrics.json"
    if metrics_path.exists():
        result = json.loads(metrics_path.read_text())
    else:
        result = evaluate_encoder(encoder, dataset, split, layout.encoder_eval, progress=progress)
    logger.info("\n%s", format_encoder_result(result))
    return result
