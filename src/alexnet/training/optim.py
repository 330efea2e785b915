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
``code2012`` reading follows the released configuration: biases are not
weight-decayed and learn at ``CODE2012.bias_lr_multiplier`` times the weights'
rate.  Each group stores ``lr_scale`` (1 or that multiplier) and schedules set
``group["lr"] = base_lr * group["lr_scale"]`` so the ratio survives every drop.

Freezing: the 2012 run froze conv1 from epoch ``CODE2012.conv1_frozen_from_epoch``.
:func:`freeze` sets ``requires_grad = False`` on a layer's parameters, and
:class:`PaperSGD` skips parameters that do not require a gradient, so their
weights and velocities stay exactly as they were.  (How cuda-convnet froze a
layer -- for instance by setting its epsilon to 0, which under this rule would
let the remaining velocity decay into the weights -- is not recorded; we stop
the layer dead.)
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
    ``requires_grad=False``, are skipped.  ``foreach=None`` uses the multi-tensor
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


def param_groups(model: nn.Module, reading: str | Reading, lr: float, weight_decay: float, momentum: float) -> list[dict]:
    """Optimizer parameter groups for a reading (trainable parameters only).

    * ``paper``: one group ``"all"``: every parameter at ``lr``, all weight-decayed.
    * ``code2012``: ``"weights"`` at ``lr`` with ``weight_decay``; ``"biases"``
      (names ending in ``bias``) with weight decay 0 and
      ``lr * CODE2012.bias_lr_multiplier``.

    Every group carries ``lr_scale``; a schedule sets ``lr = base_lr * lr_scale``.
    """
    switches = reading_of(reading)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise UserError("the model has no trainable parameters")
    if switches.bias_weight_decay and switches.bias_lr_multiplier == 1.0:
        return [
            dict(
                name="all",
                params=[p for _, p in named],
                lr=lr,
                lr_scale=1.0,
                weight_decay=weight_decay,
                momentum=momentum,
            )
        ]
    weights = [p for n, p in named if not n.endswith("bias")]
    biases = [p for n, p in named if n.endswith("bias")]
    bias_wd = weight_decay if switches.bias_weight_decay else 0.0
    scale = switches.bias_lr_multiplier
    groups = [
        dict(name="weights", params=weights, lr=lr, lr_scale=1.0, weight_decay=weight_decay, momentum=momentum),
        dict(name="biases", params=biases, lr=lr * scale, lr_scale=scale, weight_decay=bias_wd, momentum=momentum),
    ]
    return [g for g in groups if g["params"]]


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
