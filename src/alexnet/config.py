"""Training configuration: paper defaults, TOML presets, dotted overrides.

The defaults of every field come from :mod:`alexnet.paper`, so the ``paper``
preset is empty.  Other presets (``src/alexnet/presets/*.toml``) change only
what they must.  ``--set optim.lr=0.02`` overrides one key; an unknown section
or key is a :class:`UserError` listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from alexnet.errors import UserError
from alexnet.paper import ARCH, CODE2012, DATA, LEARNING


@dataclass
class DataConfig:
    store: str = ""  # a store written by `alexnet prepare`
    train_split: str = "train"
    val_split: str = "val"  # falls back to "test" when the store has no "val"
    crop: int = DATA.crop_size  # §4.1; must equal model.input_size
    mean: str = "image"  # "image" (cuda-convnet) or "channel"
    pca: bool = True  # §4.1 colour noise
    pca_std: float = DATA.pca_std
    workers: int = 2  # DataLoader worker processes (0 = in the main process)
    augment_device: str = "cpu"  # "cpu" (workers) or "device" (on the GPU, whole batches)


@dataclass
class ModelConfig:
    reading: str = "paper"
    variants: list[str] = field(default_factory=list)
    num_classes: int = 0  # 0 = from the store
    width: float = 1.0
    fc_units: int = ARCH.fc_units
    init: str = "paper"  # "paper" (§5: std 0.01) or "fan-in" (the paper's per-layer gain, for narrow networks)
    dropout: str = "inverted"  # "paper" (§4.2: x0.5 at test time; presets paper, code2012) or "inverted" (PyTorch's)


@dataclass
class OptimConfig:
    lr: float = LEARNING.lr
    momentum: float = LEARNING.momentum
    weight_decay: float = LEARNING.weight_decay
    batch_size: int = LEARNING.batch_size  # global batch, split across ranks


@dataclass
class ScheduleConfig:
    kind: str = "plateau"  # "plateau" (§5) or "fixed"
    patience: int = 2  # epochs without improvement before dividing the rate (not in the paper)
    min_improvement: float = 0.001  # absolute top-1 error fraction
    divisor: float = LEARNING.lr_divisor
    max_reductions: int = LEARNING.lr_reductions
    drop_epochs: list[int] = field(default_factory=lambda: list(CODE2012.lr_drop_epochs))
    max_epochs: int = LEARNING.epochs


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    amp: str = "off"  # "off" or "bf16" (CUDA)
    channels_last: bool = False
    compile: bool = False  # torch.compile the network (GPU: fuses the elementwise layers; first steps are slow)
    checkpoint_every: int = 0  # steps between in-epoch checkpoints (0 = only at epoch ends)
    log_every: int = 10  # steps between metrics lines
    max_steps: int = 0  # stop after this many steps in all (0 = no limit); for budgets and tests
    health_window: int = 500  # steps to look back for a loss stuck at ln(num_classes) (0 = off)
    threads: int = 0  # torch threads (0 = torch's default)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def presets() -> list[str]:
    """Names of the built-in presets."""
    folder = resources.files("alexnet") / "presets"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def _apply(config: Config, data: dict[str, Any], source: str, key: str | None = None) -> None:
    """Set ``data``'s sections and keys on ``config``; errors name ``source`` (a file, a preset) or ``key``."""
    where = f"{source}: " if source else ""
    sections = {f.name: getattr(config, f.name) for f in fields(Config)}
    for section, values in data.items():
        if section not in sections:
            raise UserError(f"{where}unknown section {section!r}; valid sections: {', '.join(sections)}", key=key)
        if not isinstance(values, dict):
            raise UserError(f"{where}{section} must be a table of keys", key=key)
        target = sections[section]
        valid = {f.name: f for f in fields(target)}
        for name, value in values.items():
            if name not in valid:
                raise UserError(
                    f"{where}unknown key {section}.{name}; valid keys in [{section}]: {', '.join(valid)}", key=key
                )
            setattr(target, name, _coerce(f"{section}.{name}", getattr(target, name), value, where, key))


def _coerce(name: str, default: Any, value: Any, where: str, key: str | None) -> Any:
    """Check ``value`` against the type of the default, converting int -> float where harmless."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"{where}{name} must be true or false, got {value!r}", key=key)
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, list):
        if not isinstance(value, list):
            value = [value] if not isinstance(value, str) else [v for v in value.split(",") if v]
        return value
    if not isinstance(value, type(default)) or isinstance(value, bool) and not isinstance(default, bool):
        raise UserError(f"{where}{name} must be {type(default).__name__}, got {value!r}", key=key)
    return value


def parse_assignment(text: str, *, key: str, example: str, typed: bool = True) -> tuple[str, Any]:
    """``'KEY=VALUE'`` -> ``(KEY, VALUE)``: the one parser of every ``KEY=VALUE`` argument.

    With ``typed`` the value is read as TOML (``0.02`` a float, ``true`` a bool, ``[1, 2]``
    a list); a bare word that is not TOML stays a string.  ``key`` names the parameter in
    errors, ``example`` shows the expected form.
    """
    if "=" not in text:
        raise UserError(f"{text!r}: expected KEY=VALUE, e.g. {example}", key=key)
    name, raw = (s.strip() for s in text.split("=", 1))
    if not name:
        raise UserError(f"{text!r}: expected KEY=VALUE, e.g. {example}", key=key)
    if not typed:
        return name, raw
    try:
        return name, tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return name, raw


def parse_override(text: str) -> tuple[str, str, Any]:
    """'optim.lr=0.02' -> ('optim', 'lr', 0.02); values are TOML, bare words are strings."""
    example = "optim.lr=0.02"
    name, value = parse_assignment(text, key="set", example=example)
    if "." not in name:
        raise UserError(f"{text!r}: expected section.key=value, e.g. {example}", key="set")
    section, field_name = name.split(".", 1)
    return section, field_name, value


def load_config(preset: str = "paper", overrides: list[str] | None = None, file: str | Path | None = None) -> Config:
    """A preset (or a TOML file), then ``overrides`` in order."""
    config = Config()
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise UserError(f"config file {path} does not exist")
        try:
            _apply(config, tomllib.loads(path.read_text()), str(path))
        except tomllib.TOMLDecodeError as err:
            raise UserError(f"{path}: not valid TOML ({err})") from None
    else:
        names = presets()
        if preset not in names:
            raise UserError(f"unknown value {preset!r}; allowed: {', '.join(names)}", key="preset")
        text = (resources.files("alexnet") / "presets" / f"{preset}.toml").read_text()
        _apply(config, tomllib.loads(text), f"preset {preset}")
    return apply_overrides(config, overrides)


def apply_overrides(config: Config, overrides: list[str] | None) -> Config:
    """Apply ``section.key=value`` overrides in order (in place; returns ``config``)."""
    for text in overrides or []:
        section, name, value = parse_override(text)
        _apply(config, {section: {name: value}}, "", key="set")
    return config


def config_from_dict(data: dict[str, Any]) -> Config:
    config = Config()
    _apply(config, data, "config")
    return config


def to_toml(config: Config) -> str:
    """Render the resolved config as TOML (flat tables of scalars and lists)."""
    lines: list[str] = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)
