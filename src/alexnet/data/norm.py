"""The last step of every input pipeline: channel order, pixel unit, per-channel mean and std.

The paper's pipeline ends with the training mean subtracted in 0..255 units
(§2; :mod:`alexnet.data.transforms`); networks trained elsewhere expect more:
torchvision's ``ToTensor`` + ``Normalize`` divide by 255 and then normalise
each channel by a mean and a standard deviation, Caffe's ``bvlc_alexnet``
takes BGR channels minus per-channel means.  :class:`InputNorm` is that step,
in one place, applied after the crop (and after any mean image):

    x -> (x[channels] / unit - mean) / std       (per channel, network's channel order)

The identity (the default: RGB, unit 1, no mean, no std) changes nothing, so
runs trained here keep their inputs bit for bit.  It is read from a run's
config (``data.channels``, ``data.input_unit``, ``data.input_mean``,
``data.input_std``), so training, evaluation, prediction, features and reports
all normalise the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from alexnet.errors import UserError

CHANNEL_ORDERS: tuple[str, ...] = ("RGB", "BGR")


def _triple(values: Sequence[float] | None, key: str) -> tuple[float, float, float] | None:
    if values is None or len(values) == 0:
        return None
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise UserError(f"must be three numbers, got {list(values)!r}", key=key) from None
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise UserError(f"must be three finite numbers (one per channel), got {list(values)!r}", key=key)
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class InputNorm:
    """Channel order, unit, per-channel mean and std applied to float patches in 0..255 units."""

    channels: str = "RGB"
    unit: float = 1.0  # pixel values are divided by this (255: inputs in 0..1)
    mean: tuple[float, float, float] | None = None  # subtracted after the unit, network's channel order
    std: tuple[float, float, float] | None = None  # divides after the mean

    def __post_init__(self) -> None:
        if self.channels not in CHANNEL_ORDERS:
            raise UserError(f"unknown value {self.channels!r}; allowed: {', '.join(CHANNEL_ORDERS)}",
                            key="data.channels")
        if not (isinstance(self.unit, (int, float)) and math.isfinite(self.unit) and self.unit > 0):
            raise UserError(f"must be a positive number, got {self.unit!r}", key="data.input_unit")
        object.__setattr__(self, "mean", _triple(self.mean, "data.input_mean"))
        object.__setattr__(self, "std", _triple(self.std, "data.input_std"))
        if self.std is not None and min(self.std) <= 0:
            raise UserError(f"must be positive, got {list(self.std)}", key="data.input_std")

    @classmethod
    def from_config(cls, data: Any) -> "InputNorm":
        """From a :class:`alexnet.config.DataConfig` (or anything with its four fields)."""
        return cls(data.channels, float(data.input_unit), data.input_mean or None, data.input_std or None)

    @property
    def identity(self) -> bool:
        return self.channels == "RGB" and self.unit == 1.0 and self.mean is None and self.std is None

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "unit": self.unit, "mean": list(self.mean) if self.mean else None,
                "std": list(self.std) if self.std else None}

    def describe(self) -> str:
        """One line for reports and sidecars."""
        if self.identity:
            return "RGB in 0..255 units"
        parts = [f"{self.channels} channels"]
        parts.append("x / 255 (0..1 inputs)" if self.unit == 255.0 else f"x / {self.unit:g}" if self.unit != 1.0
                     else "0..255 units")
        if self.mean is not None:
            parts.append("minus mean (" + ", ".join(f"{v:g}" for v in self.mean) + ")")
        if self.std is not None:
            parts.append("divided by std (" + ", ".join(f"{v:g}" for v in self.std) + ")")
        return ", ".join(parts)

    def apply_(self, x: Tensor) -> Tensor:
        """Normalise float ``x`` (..., 3, H, W) in 0..255 units; in place where it can, returns the result.

        The arithmetic is torchvision's (``div(255)``, then ``sub_(mean).div_(std)`` with float32
        mean and std), so its pipeline and this one give the same float32 numbers.
        """
        if self.identity:
            return x
        if x.shape[-3] != 3:
            raise UserError(f"expected 3 channels in dimension -3, got shape {tuple(x.shape)}")
        if self.channels == "BGR":
            x = x.flip(-3)
        if self.unit != 1.0:
            x = x.div_(self.unit)
        if self.mean is not None:
            x = x.sub_(torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None])
        if self.std is not None:
            x = x.div_(torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None])
        return x
