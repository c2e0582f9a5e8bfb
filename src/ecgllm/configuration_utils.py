"""Command-line flags made from the configuration dataclasses, so that a setting is declared once.

A field becomes a flag when its metadata has a `help` text (`setting(default, "help")`); `choices` restricts it, and
`follows=("r", 2)` makes it default to twice another field of the same config when only that one is given. Flags
default to "not given", so a preset's value holds unless the user names the flag; validation stays in the configs'
own `__post_init__` (with `check_choice` and `check_range`, which raise SettingError).
"""

import argparse
import dataclasses
import types
import typing

from ecgllm.errors import SettingError

_SCALARS = (int, float, str)


def setting(default=dataclasses.MISSING, help: str = "", choices=None, follows: tuple[str, int] | None = None,
            default_factory=dataclasses.MISSING):
    """A dataclass field that is also a command-line flag."""
    metadata = {"help": help, "choices": choices, "follows": follows}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _comma_separated(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _scalar_type(hint):
    """int, float, str or bool behind an Optional (a tuple of strings is written comma-separated); None for anything
    a flag cannot carry."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else None
    if typing.get_origin(hint) is tuple and typing.get_args(hint) == (str, ...):
        return _comma_separated
    return hint if hint in (*_SCALARS, bool) else None


def _flag_fields(config_class):
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        if field.metadata.get("help"):
            yield field, hints[field.name]


def _dest(prefix: str, name: str) -> str:
    return f"{prefix.replace('-', '_')}{name}"


def add_config_arguments(parser: argparse.ArgumentParser, config_class, title: str, prefix: str = "") -> None:
    """One argument group with a flag per documented field of `config_class` (nested configs get their own group
    with the field name as prefix, e.g. --lora-r)."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        if dataclasses.is_dataclass(hints[field.name]) and field.metadata.get("help"):
            add_config_arguments(parser, hints[field.name], field.metadata["help"], f"{prefix}{field.name}-")
    for field, hint in _flag_fields(config_class):
        kind = _scalar_type(hint)
        if kind is None:
            continue
        flag = "--" + (prefix + field.name).replace("_", "-")
        options = {"dest": _dest(prefix, field.name), "default": argparse.SUPPRESS, "help": field.metadata["help"]}
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        else:
            group.add_argument(flag, type=kind, choices=field.metadata.get("choices"), **options)


def given_settings(args: argparse.Namespace, config_class, prefix: str = "") -> dict:
    """The fields of `config_class` the user set on the command line (nested configs as dicts)."""
    hints = typing.get_type_hints(config_class)
    given = {}
    for field in dataclasses.fields(config_class):
        if dataclasses.is_dataclass(hints[field.name]):
            nested = given_settings(args, hints[field.name], f"{prefix}{field.name}-")
            if nested:
                given[field.name] = nested
        elif hasattr(args, _dest(prefix, field.name)):
            given[field.name] = getattr(args, _dest(prefix, field.name))
    return given


def override(config, given: dict):
    """A copy of `config` with the `given` settings (from `given_settings`) replaced; the config's own validation
    runs on the result."""
    values = {}
    for field in dataclasses.fields(config):
        if field.name not in given:
            continue
        value = given[field.name]
        values[field.name] = override(getattr(config, field.name), value) if isinstance(value, dict) else value
    for field in dataclasses.fields(config):  # a setting that follows another one that was given alone
        follows = field.metadata.get("follows")
        if follows and follows[0] in values and field.name not in values:
            values[field.name] = follows[1] * values[follows[0]]
    return dataclasses.replace(config, **values)


def check_choice(name: str, value, choices) -> None:
    """For __post_init__: an error that names the setting, the value and what it may be."""
    if value not in choices:
        raise SettingError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")


def check_range(name: str, value, low=None, high=None) -> None:
    if value is None:
        return
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"at most {high}" if low is None else f"{low} to {high}"
        raise SettingError(f"{name} must be {bounds}, not {value!r}")
