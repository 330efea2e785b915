"""Training configuration: paper defaults, TOML presets, dotted overrides.

The defaults of every field come from :mod:`alexnet.paper`, so the ``paper``
preset is empty.  Other presets (``src/alexnet/presets/*.toml``) change only
what they must.  ``--set optim.lr=0.02`` overrides one key; an unknown section
or key is a :class:`UserError` listing the valid ones.  :func:`validate` checks every
value (ranges, choices) in one place, before anything is built or written: a bad value
is a :class:`UserError` naming its key (``--set optim.batch_size: must be at least 1, got 0``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from alexnet.errors import UserError
from alexnet.paper import ARCH, CODE2012, DATA, LEARNING, READINGS


@dataclass
class DataConfig:
    store: str = ""  # a store written by `alexnet prepare`
    train_split: str = "train"
    val_split: str = "auto"  # decisions (rate drops, stopping, best.pt): auto = holdout, else val, else test
    crop: int = DATA.crop_size  # §4.1; must equal model.input_size
    mean: str = "image"  # "image" (cuda-convnet), "channel", or "none" (imported weights: input_mean instead)
    pca: bool = True  # §4.1 colour noise
    pca_std: float = DATA.pca_std
    workers: int = 2  # DataLoader worker processes (0 = in the main process)
    augment_device: str = "cpu"  # "cpu" (workers) or "device" (on the GPU, whole batches)
    # The last step of the pipeline (alexnet.data.norm.InputNorm); the defaults change nothing.
    channels: str = "RGB"  # "BGR": channels reversed (Caffe's networks)
    input_unit: float = 1.0  # pixels divided by this after the mean (255: 0..1 inputs, torchvision's)
    input_mean: list[float] = field(default_factory=list)  # per-channel means subtracted after that
    input_std: list[float] = field(default_factory=list)  # per-channel standard deviations dividing last
    verify: str = "auto"  # store checksums before training: "auto" (stores up to 2 GiB), "checksums", "sizes"


@dataclass
class ModelConfig:
    reading: str = "paper"
    variants: list[str] = field(default_factory=list)
    num_classes: int = 0  # 0 = from the store
    width: float = 1.0
    fc_units: int = ARCH.fc_units
    init: str = "paper"  # "paper" (§5: std 0.01) or "fan-in" (the paper's per-layer gain, for narrow networks)
    arch: str = "alexnet2012"  # the paper's network; owt2014, caffe: published ones (alexnet.net.variants.ARCHS)
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
    warmup_steps: int = 0  # ramp the rate linearly over the first steps (not in the paper; 0 = off)


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    amp: str = "auto"  # "auto" (bf16 where the CPU or GPU computes it natively), "bf16" or "off"
    channels_last: bool = True  # NHWC activations: faster for this network on the CPU and on GPUs
    compile: bool = False  # torch.compile the network (GPU: fuses the elementwise layers; first steps are slow)
    checkpoint_every: int = 0  # steps between in-epoch checkpoints (0 = only at epoch ends)
    log_every: int = 10  # steps between metrics lines
    max_steps: int = 0  # stop after this many steps in all (0 = no limit); for budgets and tests
    health_window: int = 500  # steps to look back for a loss stuck at ln(num_classes) (0 = off)
    snapshot_every: int = 50  # steps between the in-memory states an explosion rolls back to
    max_rollbacks: int = 3  # explosions survived (each rolls back and lowers the rate) before the run stops
    rollback_lr_factor: float = 0.5  # the learning rate is multiplied by this at each roll-back
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


#: Choices of the string keys (a test pins the ones restated from higher layers to their sources).
CHOICES: dict[str, tuple[str, ...]] = {
    "data.mean": ("image", "channel", "none"),  # alexnet.data.augment.MEAN_MODES
    "data.channels": ("RGB", "BGR"),  # alexnet.data.norm.CHANNEL_ORDERS
    "data.augment_device": ("cpu", "device"),
    "data.verify": ("auto", "checksums", "sizes"),
    "model.reading": READINGS,
    "model.init": ("paper", "fan-in", "he", "he-bias", "he-scaled"),  # alexnet.net.model.INITS
    "model.arch": ("alexnet2012", "owt2014", "caffe"),  # alexnet.net.model.ARCHS
    "model.dropout": ("paper", "inverted"),  # alexnet.net.model.DROPOUTS
    "schedule.kind": ("plateau", "fixed", "code2012"),  # alexnet.training.schedule.SCHEDULE_KINDS
    "run.amp": ("auto", "bf16", "off"),  # alexnet.runtime.AMP_CHOICES
}
#: Lower bounds (inclusive unless the key is in OPEN_BELOW) and upper bounds of the numeric keys.
MINIMUM: dict[str, float] = {
    "data.crop": 1, "data.pca_std": 0, "data.workers": 0, "data.input_unit": 0,
    "model.num_classes": 0, "model.width": 0, "model.fc_units": 1,
    "optim.lr": 0, "optim.momentum": 0, "optim.weight_decay": 0, "optim.batch_size": 1,
    "schedule.patience": 1, "schedule.min_improvement": 0, "schedule.divisor": 1, "schedule.max_reductions": 0,
    "schedule.max_epochs": 1, "schedule.warmup_steps": 0,
    "run.seed": 0, "run.checkpoint_every": 0, "run.log_every": 1, "run.max_steps": 0, "run.health_window": 0,
    "run.snapshot_every": 0, "run.max_rollbacks": 0, "run.rollback_lr_factor": 0, "run.threads": 0,
}
OPEN_BELOW = {"model.width", "optim.lr", "schedule.divisor", "run.rollback_lr_factor", "data.input_unit"}
MAXIMUM: dict[str, float] = {"optim.momentum": 1, "run.rollback_lr_factor": 1,
                             "run.seed": 2**32 - 1}
OPEN_ABOVE = {"optim.momentum"}


def validate(config: "Config") -> "Config":
    """Check every value of ``config``; the first bad one is a :class:`UserError` naming its key."""
    values = {f"{section}.{k}": v for section, table in config.to_dict().items() for k, v in table.items()}
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"must be a finite number, got {value}", key=key)
        if key in CHOICES and value not in CHOICES[key]:
            raise UserError(f"unknown value {value!r}; allowed: {', '.join(CHOICES[key])}", key=key)
        low, high = MINIMUM.get(key), MAXIMUM.get(key)
        if low is not None and (value < low or (key in OPEN_BELOW and value == low)):
            relation = "more than" if key in OPEN_BELOW else "at least"
            raise UserError(f"must be {relation} {low:g}, got {value}", key=key)
        if high is not None and (value > high or (key in OPEN_ABOVE and value == high)):
            relation = "less than" if key in OPEN_ABOVE else "at most"
            raise UserError(f"must be {relation} {high:g}, got {value}", key=key)
    for key in ("data.train_split", "data.val_split"):
        if not values[key] or "/" in values[key]:
            raise UserError(f"must name a split of the store, got {values[key]!r}", key=key)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", values["run.device"]):
        raise UserError(f"unknown device {values['run.device']!r}; allowed: auto, cpu, cuda, cuda:N", key="run.device")
    drops = values["schedule.drop_epochs"]
    if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in drops) or drops != sorted(set(drops)):
        raise UserError(f"must be increasing positive epochs, got {drops}", key="schedule.drop_epochs")
    if not all(isinstance(v, str) for v in values["model.variants"]):
        raise UserError(f"must be names of variants, got {values['model.variants']}", key="model.variants")
    return config


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
            field_key = f"{section}.{name}" if key == "set" else key  # --set optim.lr: must be float, ...
            setattr(target, name, _coerce(f"{section}.{name}", getattr(target, name), value, where, field_key))


def _coerce(name: str, default: Any, value: Any, where: str, key: str | None) -> Any:
    """Check ``value`` against the type of the default, converting int -> float where harmless."""
    where = "" if key == name else f"{where}{name} "  # an error keyed by the name need not repeat it
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"{where}must be true or false, got {value!r}", key=key)
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, list):
        if not isinstance(value, list):
            value = [value] if not isinstance(value, str) else [v.strip() for v in value.split(",") if v.strip()]
        if default and all(isinstance(d, int) for d in default):  # a list of numbers (drop epochs)
            try:
                value = [int(v) if isinstance(v, str) else v for v in value]
            except ValueError:
                raise UserError(f"{where}must be a list of whole numbers, got {value!r}", key=key) from None
        return value
    if not isinstance(value, type(default)) or isinstance(value, bool) and not isinstance(default, bool):
        raise UserError(f"{where}must be {type(default).__name__}, got {value!r}", key=key)
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
    return validate(apply_overrides(config, overrides))


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
