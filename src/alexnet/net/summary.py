"""``alexnet summary``: the layer table (output shape, parameters, FLOPs), to check against Figure 2."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from alexnet.net.model import AlexNet


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output: tuple[int, ...]  # (C, H, W) or (features,), batch dimension dropped
    parameters: int
    flops: int  # multiply-adds x 2 for conv/linear, one per element otherwise; forward, one image


def _flops(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        macs = out[0].numel() * (module.in_channels // module.groups) * kh * kw
        return 2 * macs
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * module.out_features
    if isinstance(module, (nn.Flatten, nn.Dropout)):
        return 0
    return out[0].numel()


def layer_table(model: AlexNet) -> list[LayerRow]:
    """Run one zero image through ``model`` (eval mode) and record each child's output."""
    size = model.spec.input_size
    x = torch.zeros(1, 3, size, size)
    rows: list[LayerRow] = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            params = sum(p.numel() for p in module.parameters())
            rows.append(LayerRow(name, type(module).__name__, tuple(x.shape[1:]), params, _flops(module, x)))
    model.train(was_training)
    return rows


def format_table(rows: list[LayerRow]) -> str:
    """The table as fixed-width text, with a total line."""
    header = f"{'layer':<8} {'type':<18} {'output':>16} {'parameters':>12} {'MFLOPs':>10}"
    lines = [header, "-" * len(header)]
    for r in rows:
        shape = "x".join(str(d) for d in r.output)
        lines.append(f"{r.name:<8} {r.kind:<18} {shape:>16} {r.parameters:>12,} {r.flops / 1e6:>10.1f}")
    lines.append("-" * len(header))
    total_p = sum(r.parameters for r in rows)
    total_f = sum(r.flops for r in rows)
    lines.append(f"{'total':<8} {'':<18} {'':>16} {total_p:>12,} {total_f / 1e6:>10.1f}")
    return "\n".join(lines)
