"""Small helpers shared by every stage: seeding, logging, the compute device, the host a result came from."""

import logging
import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

from ecgllm.errors import SettingError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> this process's CUDA device if there is one (under `accelerate launch` or torchrun, the GPU of its
    LOCAL_RANK; else the first), else the CPU; anything else as torch spells it."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise SettingError(f"unknown device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SettingError(f"device {name!r} asked for, but this machine has no CUDA GPU")
    return device


HOST_NAME = "host.json"  # written beside a trained model's training config (modeling_utils.save_training_config)
# Variables that cap the vector instructions torch's CPU kernels (ATen, oneDNN, MKL) use.
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


def describe_host() -> dict:
    """What a result depends on besides the code, data and seed. The same seed on one host repeats to the last digit,
    but another instruction set sums floats in another order, and training drifts from there (an AVX-512 host and the
    same host capped at AVX2 part in the first epoch)."""
    cpu = {"model": platform.processor() or platform.machine(), "vector_flags": []}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        fields = dict(line.split(":", 1) for line in cpuinfo.read_text().split("\n\n")[0].splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        cpu = {"model": fields.get("model name", cpu["model"]),
               "family_model_stepping": [fields.get(k) for k in ("cpu family", "model", "stepping")],
               "vector_flags": [f for f in VECTOR_FLAGS if f in fields.get("flags", "").split()]}
    return {"cpu": cpu, "aten_capability": torch.backends.cpu.get_cpu_capability(),
            "isa_limits": {name: os.environ[name] for name in ISA_VARIABLES if name in os.environ},
            "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
