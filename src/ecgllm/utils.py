"""Small helpers shared by every stage: seeding, logging, the compute device."""

import logging
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
    """"auto" -> the first CUDA device if there is one, else the CPU; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise SettingError(f"unknown device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SettingError(f"device {name!r} asked for, but this machine has no CUDA GPU")
    return device
