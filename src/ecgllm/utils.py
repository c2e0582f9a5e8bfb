"""Small helpers shared by every stage: seeding, logging, the compute device."""

import logging
import os
import random

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
