"""`save_pretrained` / `from_pretrained` for our models: a dataclass config as JSON beside safetensors weights."""

import dataclasses
import json
import types
import typing
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ecgllm.errors import CheckpointError
from ecgllm.utils import HOST_NAME, describe_host

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TRAINING_CONFIG_NAME = "training_config.json"


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def save_training_config(folder: Path, config) -> None:
    """How a model is being trained, and on which host, beside where its weights will be saved."""
    (folder / TRAINING_CONFIG_NAME).write_text(json.dumps(config_to_dict(config), indent=2))
    (folder / HOST_NAME).write_text(json.dumps(describe_host(), indent=2))


def config_from_dict(config_class, raw: dict, source: str = "config"):
    """Build a (possibly nested) dataclass config from JSON, turning lists back into tuples; unknown keys are errors."""
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise CheckpointError(f"{source}: unknown {config_class.__name__} settings {unknown}")
    hints = typing.get_type_hints(config_class)
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value, source)
        elif isinstance(value, list) and (typing.get_origin(hint) is tuple or _optional_tuple(hint)):
            value = tuple(value)
        values[name] = value
    return config_class(**values)


def _optional_tuple(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and any(
        typing.get_origin(arg) is tuple for arg in typing.get_args(hint))


def config_text(config, model_type: str, omit: dict | None = None) -> str:
    """A config as `save_config` writes it; `omit`: fields left out while they hold the given values."""
    settings = {k: v for k, v in config_to_dict(config).items() if k not in (omit or {}) or v != omit[k]}
    return json.dumps({"model_type": model_type, **settings}, indent=2, ensure_ascii=False)


def save_config(config, path: Path, model_type: str) -> None:
    path.write_text(config_text(config, model_type), encoding="utf-8")


def load_config(config_class, path: Path, model_type: str):
    return config_from_dict(config_class, read_config(path, model_type), str(path))


def read_config(path: Path, model_type: str) -> dict:
    """The raw settings of a saved config (without its model_type), for configs that need migrating first."""
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: no {path.name}; not a model folder written by save_pretrained")
    try:
        raw = json.loads(path.read_text())
    except ValueError as error:
        raise CheckpointError(f"{path}: unreadable JSON ({error})") from None
    found = raw.pop("model_type", None)
    if found != model_type:
        raise CheckpointError(f"{path}: holds a {found!r} model, expected {model_type!r}")
    return raw


def load_weights(module: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights strictly; a missing, corrupt or mismatched file is a CheckpointError naming it."""
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: no {path.name}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: corrupt weights file ({error})") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the model described by its config ({error})") from None


class PretrainedMixin:
    """Adds save_pretrained/from_pretrained to an nn.Module with a dataclass `self.config`."""

    config_class: type
    model_type: str

    def save_pretrained(self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Config + weights; `state_dict` replaces the module's own tensors (those of a sharded module are shards)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_config(self.config, folder / CONFIG_NAME, self.model_type)
        state = self.state_dict() if state_dict is None else state_dict
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in state.items()}
        save_file(state, str(folder / WEIGHTS_NAME))
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, **config_overrides):
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: no such model folder")
        config = load_config(cls.config_class, folder / CONFIG_NAME, cls.model_type)
        config = dataclasses.replace(config, **config_overrides)
        model = cls(config)
        load_weights(model, folder / WEIGHTS_NAME)
        return model.eval()
