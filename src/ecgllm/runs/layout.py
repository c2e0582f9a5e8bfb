"""Where each stage of a run folder writes, and loading the trained ECG-LLM of a run (or of a model folder)."""

from dataclasses import dataclass
from pathlib import Path

from ecgllm.errors import CheckpointError
from ecgllm.llm.modeling_ecgllm import ECGLLM
from ecgllm.modeling_utils import CONFIG_NAME
from ecgllm.utils import resolve_device


@dataclass
class RunLayout:
    """RUN/ run.json, split.json, encoder/ (eval/), cache/ (ECG tokens and rhythm figures of every LLM variant),
    llm/ (checkpoint_epoch_N/, final/, eval/), report.html."""

    root: Path
    llm_name: str = "llm"  # an LLM variant trained beside the default one, e.g. "llm_whole"

    @classmethod
    def of_llm_folder(cls, llm_dir: str | Path) -> "RunLayout":
        """The run that holds an LLM training folder (RUN/llm)."""
        llm_dir = Path(llm_dir)
        return cls(llm_dir.parent, llm_dir.name)

    @classmethod
    def of_model_dir(cls, model_dir: str | Path) -> "RunLayout":
        """The run that holds a trained model folder (RUN/llm/final)."""
        return cls.of_llm_folder(Path(model_dir).parent)

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


def load_model(path: str | Path, device: str = "auto") -> ECGLLM:
    """The trained ECG-LLM of a run folder or a model folder, on `device` ("auto": a CUDA GPU when there is one),
    ready for inference: its LoRA adapter folded into the backbone's weights."""
    device = resolve_device(device)  # a bad device name fails before minutes of loading
    return ECGLLM.from_pretrained(resolve_model_dir(path), device=device).for_inference()
