"""The paper's own model parallelism (§3.2): each column of the network on its own device.

"The parallelization scheme that we employ essentially puts half of the
kernels (or neurons) on each GPU, with one additional trick: the GPUs
communicate only in certain layers."  :class:`TwoDeviceAlexNet` splits a
built :class:`~alexnet.net.model.AlexNet` into its two columns, column ``c`` on
``devices[c]``.  Layers that see only their own column (conv2, conv4, conv5:
grouped convolutions; every ReLU, normalisation, pooling and dropout) run
where their column lives; layers that see both columns (conv3 and the
fully-connected layers) first copy the other column's activity across -- the
only communication -- and then compute their own half of the outputs.
conv1 reads the image, which both devices receive.  fc8 runs on the first device.

The weights are copies; :meth:`TwoDeviceAlexNet.state_dict_single` merges them
back into the single-device layout, so checkpoints stay interchangeable.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn

from alexnet.errors import UserError
from alexnet.net.lrn import LocalResponseNorm
from alexnet.net.model import AlexNet


def _split_conv(conv: nn.Conv2d, column: int, sees_both: bool) -> nn.Conv2d:
    """Column ``column``'s half of a conv layer's kernels (and, if grouped, its own input maps)."""
    half = conv.out_channels // 2
    in_channels = conv.in_channels if (sees_both or conv.groups == 1) else conv.in_channels // 2
    part = nn.Conv2d(in_channels, half, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        part.weight.copy_(conv.weight[column * half:(column + 1) * half])
        if conv.bias is not None:
            part.bias.copy_(conv.bias[column * half:(column + 1) * half])
    return part


def _split_linear(linear: nn.Linear, column: int) -> nn.Linear:
    half = linear.out_features // 2
    part = nn.Linear(linear.in_features, half)
    with torch.no_grad():
        part.weight.copy_(linear.weight[column * half:(column + 1) * half])
        part.bias.copy_(linear.bias[column * half:(column + 1) * half])
    return part


class _Exchange(nn.Module):
    """Marker: before this layer each column receives the other column's activity."""


class TwoDeviceAlexNet(nn.Module):
    """A two-column AlexNet with column ``c`` on ``devices[c]`` (§3.2)."""

    def __init__(self, model: AlexNet, devices: Sequence[torch.device | str]) -> None:
        super().__init__()
        if model.spec.columns != 2:
            raise UserError("model parallelism needs the two-column network (not the one-column variant)")
        if len(devices) != 2:
            raise UserError(f"model parallelism takes exactly two devices, got {len(devices)}")
        self.spec = model.spec
        self.devices = [torch.device(d) for d in devices]
        self.names: list[str] = []
        self.exchange: list[bool] = []
        self.columns = nn.ModuleList([nn.ModuleDict(), nn.ModuleDict()])
        for name, layer in model.named_children():
            if name == "fc8":
                break
            sees_both = isinstance(layer, nn.Linear) or (
                isinstance(layer, nn.Conv2d) and layer.groups == 1 and name != "conv1")
            for c in range(2):
                if isinstance(layer, nn.Conv2d):
                    part: nn.Module = _split_conv(layer, c, sees_both)
                elif isinstance(layer, nn.Linear):
                    part = _split_linear(layer, c)
                elif isinstance(layer, LocalResponseNorm):
                    part = LocalResponseNorm(layer.n, layer.alpha, layer.beta, layer.k, layer.alpha_divided_by_n, groups=1)
                else:  # parameter-free: ReLU/tanh, pooling, dropout, padding, flatten, cnorm2
                    part = copy.deepcopy(layer)
                self.columns[c][name] = part.to(self.devices[c])
            self.names.append(name)
            self.exchange.append(sees_both)
        # the output layer runs on the first device, fed by both columns' fc7 halves
        self.fc8 = copy.deepcopy(model.fc8).to(self.devices[0])

    def forward(self, x: Tensor) -> Tensor:
        h = [x.to(self.devices[0]), x.to(self.devices[1])]
        for name, exchange in zip(self.names, self.exchange):
            if exchange:  # the only communication between the columns
                both = [torch.cat([h[0], h[1].to(self.devices[0])], 1), torch.cat([h[0].to(self.devices[1]), h[1]], 1)]
                h = both
            h = [self.columns[c][name](h[c]) for c in range(2)]
        return self.fc8(torch.cat([h[0], h[1].to(self.devices[0])], 1))

    def state_dict_single(self) -> dict[str, Tensor]:
        """The weights in the single-device :class:`AlexNet` layout (keys and shapes)."""
        out: dict[str, Tensor] = {}
        for name in self.names:
            parts = [self.columns[c][name] for c in range(2)]
            for key in ("weight", "bias"):
                tensors = [getattr(p, key, None) for p in parts]
                if tensors[0] is not None and isinstance(tensors[0], Tensor):
                    out[f"{name}.{key}"] = torch.cat([t.detach().cpu() for t in tensors], 0)
        for key, value in self.fc8.state_dict().items():
            out[f"fc8.{key}"] = value.detach().cpu()
        return out
