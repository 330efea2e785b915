"""§5: the paper's momentum update, exactly, and its parameter groups.

The paper's rule (§5), with momentum mu, weight decay lambda and learning rate eps::

    v <- mu * v - lambda * eps * w - eps * dL/dw
    w <- w + v

The learning rate sits *inside* the velocity.  ``torch.optim.SGD`` keeps it
outside (``b <- mu * b + g + lambda * w;  w <- w - eps * b``).  With a constant
eps the two produce the same weights (``v = -eps * b``); right after eps changes
they differ: the paper's velocity still carries the old eps's steps, torch's
buffer is rescaled by the new eps.  A drop by 10 therefore takes effect
gradually in the paper's rule and at once in torch's.

Parameter groups (:func:`param_groups`): the ``paper`` reading uses one group
("an equal learning rate for all layers", every parameter weight-decayed); the
``code2012`` reading follows the released configuration, one group per layer
and kind as its ``layer-params`` files have an ``epsW`` and an ``epsB`` per
layer: biases are not weight-decayed, learn at ``CODE2012.bias_lr_multiplier``
times the weights' initial rate, and keep that rate when the schedule divides
the weights' (``follows_schedule = False``: the 2012 log only ever changed
``epsW``).  Each group stores ``lr_scale`` and schedules set ``group["lr"] =
base_lr * group["lr_scale"]``, with the initial rate as ``base_lr`` for groups
that do not follow the schedule.

Freezing: the 2012 run set conv1's rate to 0 from epoch
``CODE2012.conv1_frozen_from_epoch``, and cuda-convnet skips the update of
weights whose rate is 0 (``weights.cu``: ``getBaseRate() > 0``), velocity
included.  :class:`PaperSGD` does the same for a group whose ``lr`` is 0, so the
hand events of the ``code2012`` schedule freeze a layer by its groups' rates;
:func:`freeze` (``requires_grad = False``) stops a layer the same way for
callers that build their own optimiser.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from alexnet.errors import UserError
from alexnet.paper import LEARNING, Reading, reading as reading_of


class PaperSGD(torch.optim.Optimizer):
    """SGD with momentum and weight decay in the form printed in §5.

    Per group: ``lr`` (eps), ``momentum`` (mu), ``weight_decay`` (lambda).  State per
    parameter: ``velocity`` (v, starting at zero), saved and restored by
    ``state_dict()``.  Parameters without a gradient, or with
    ``requires_grad=False``, are skipped, and so is a group whose ``lr`` is 0
    (cuda-convnet's frozen layer: weights and velocity stay as they are).  ``foreach=None`` uses the multi-tensor
    ``torch._foreach_*`` kernels when available, ``False`` a plain per-tensor loop.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = LEARNING.lr,
        momentum: float = LEARNING.momentum,
        weight_decay: float = LEARNING.weight_decay,
        *,
        foreach: bool | None = None,
    ) -> None:
        if lr < 0:
            raise UserError(f"learning rate must be non-negative, got {lr}")
        if not 0 <= momentum < 1:
            raise UserError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise UserError(f"weight decay must be non-negative, got {weight_decay}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, lr_scale=1.0)
        super().__init__(params, defaults)
        self.foreach = foreach

    def _use_foreach(self) -> bool:
        if self.foreach is not None:
            return bool(self.foreach)
        return hasattr(torch, "_foreach_add_") and hasattr(torch, "_foreach_mul_")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        use_foreach = self._use_foreach()
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            if lr == 0:
                continue
            params: list[Tensor] = []
            grads: list[Tensor] = []
            vels: list[Tensor] = []
            for p in group["params"]:
                if p.grad is None or not p.requires_grad:
                    continue
                if p.grad.is_sparse:
                    raise UserError("PaperSGD does not support sparse gradients")
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                vels.append(state["velocity"])
            if not params:
                continue
            if use_foreach:
                _foreach_update(params, grads, vels, lr, mu, wd)
            else:
                for p, g, v in zip(params, grads, vels):
                    v.mul_(mu).add_(g, alpha=-lr)
                    if wd != 0:
                        v.add_(p, alpha=-lr * wd)
                    p.add_(v)
        return loss


def _foreach_update(params: list[Tensor], grads: list[Tensor], vels: list[Tensor], lr: float, mu: float, wd: float) -> None:
    """v = mu v - eps g - eps lambda w;  w += v, with multi-tensor kernels per (device, dtype)."""
    buckets: dict[tuple, tuple[list[Tensor], list[Tensor], list[Tensor]]] = defaultdict(lambda: ([], [], []))
    for p, g, v in zip(params, grads, vels):
        bucket = buckets[(p.device, p.dtype, g.dtype)]
        bucket[0].append(p)
        bucket[1].append(g)
        bucket[2].append(v)
    for ps, gs, vs in buckets.values():
        torch._foreach_mul_(vs, mu)
        torch._foreach_add_(vs, gs, alpha=-lr)
        if wd != 0:
            torch._foreach_add_(vs, ps, alpha=-lr * wd)
        torch._foreach_add_(ps, vs)


def param_groups(model: nn.Module, reading: str | Reading, lr: float, weight_decay: float, momentum: float,
                 *, per_layer: bool = False) -> list[dict]:
    """Optimizer parameter groups for a reading (trainable parameters only).

    * ``paper``: one group ``"all"``: every parameter at ``lr``, all weight-decayed (or, with
      ``per_layer``, the same settings in one group per layer and kind, for hand events).
    * ``code2012``: one group per layer and kind, named ``"conv1.weight"``, ``"conv1.bias"``, ...:
      weights at ``lr`` with ``weight_decay``; biases with weight decay 0, at
      ``lr * CODE2012.bias_lr_multiplier``, and not following the schedule's drops.

    Every group carries ``name``, ``layer``, ``kind`` ("weight", "bias" or "all"), ``lr_scale`` and
    ``follows_schedule``; a schedule sets ``lr = base_lr * lr_scale``.
    """
    switches = reading_of(reading)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise UserError("the model has no trainable parameters")
    common = dict(weight_decay=weight_decay, momentum=momentum)
    uniform = switches.bias_weight_decay and switches.bias_lr_multiplier == 1.0 and switches.bias_lr_follows_schedule
    if uniform and not per_layer:
        return [dict(name="all", layer="", kind="all", params=[p for _, p in named], lr=lr, lr_scale=1.0,
                     follows_schedule=True, **common)]
    groups: dict[str, dict] = {}
    for name, p in named:
        layer, _, leaf = name.rpartition(".")
        kind = "bias" if leaf == "bias" else "weight"
        key = f"{layer}.{kind}"
        if key not in groups:
            bias = kind == "bias"
            scale = switches.bias_lr_multiplier if bias else 1.0
            groups[key] = dict(name=key, layer=layer, kind=kind, params=[], lr=lr * scale, lr_scale=scale,
                               follows_schedule=switches.bias_lr_follows_schedule or not bias,
                               weight_decay=weight_decay if switches.bias_weight_decay or not bias else 0.0,
                               momentum=momentum)
        groups[key]["params"].append(p)
    return list(groups.values())


def freeze(model: nn.Module, layer_names: Iterable[str]) -> list[str]:
    """Stop training the named submodules (``requires_grad = False``); returns the frozen parameter names.

    :class:`PaperSGD` then leaves those parameters and their velocities untouched.
    Raises :class:`UserError` for a name that is not a submodule of ``model``.
    """
    modules = dict(model.named_modules())
    frozen: list[str] = []
    for name in layer_names:
        if name not in modules or name == "":
            known = ", ".join(n for n, m in model.named_children())
            raise UserError(f"freeze: no layer named {name!r}; top-level layers: {known}")
        for pname, p in modules[name].named_parameters():
            p.requires_grad_(False)
            frozen.append(f"{name}.{pname}")
    return frozen
