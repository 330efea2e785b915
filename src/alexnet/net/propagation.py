"""Signal propagation at initialisation: how activity and gradients scale through the layers.

A network that "never starts learning" (the paper's N(0, 0.01) with biases of 1
in a narrow network; BVLC/caffe#59) or that diverges in its first steps shows it
before the first update: the logits are all equal (std ~0, loss ln C), or huge
(loss far above ln C), or some layer's gradients are orders of magnitude larger,
relative to its weights, than the others'.  :func:`signal_report` runs one real
batch forward and backward and records, for every layer of an
:class:`~alexnet.net.model.AlexNet`:

* ``act_std`` / ``act_rms``: standard deviation and root mean square of the layer's
  output over the batch (every element);
* ``signal``: how much the output depends on the image -- the standard deviation
  over the batch of each output element, root-mean-squared over the elements,
  divided by ``act_rms``.  1 means the output is all image, 0 that every image
  gives the same output (a layer driven by its biases: the paper's biases of 1
  with std 0.01 weights in a narrow network drive conv4 and beyond to ~0.05);
* ``dead``: fraction of the output that is exactly zero (ReLUs that do not fire);
* for conv and fully-connected layers, ``weight_std``, ``grad_std`` (std of the
  gradient of the mean cross-entropy w.r.t. the weights) and their ratio
  ``grad_std / weight_std`` -- the relative size of one plain SGD step per unit
  learning rate; a layer whose ratio is 100x the others' moves first and most.

plus the loss, ln C and the std of the logits.  The model is left as it was
(mode, weights); gradients are cleared afterwards.  Nothing here changes the
network: it is a measurement, cheap enough for the start of a training run
(one forward and backward pass): the trainer writes it to ``RUN/signal.txt`` before
the first step, and ``alexnet summary --data STORE`` prints it for any network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["LayerSignal", "SignalReport", "signal_report"]


@dataclass(frozen=True)
class LayerSignal:
    """One layer's statistics (see the module docstring)."""

    name: str
    kind: str
    act_std: float
    act_rms: float
    signal: float
    dead: float
    weight_std: float | None = None
    grad_std: float | None = None

    @property
    def grad_ratio(self) -> float | None:
        """``grad_std / weight_std``: the relative step per unit learning rate."""
        if self.grad_std is None or not self.weight_std:
            return None
        return self.grad_std / self.weight_std


@dataclass(frozen=True)
class SignalReport:
    """Per-layer statistics of one forward + backward pass, and the loss it gave."""

    layers: list[LayerSignal]
    loss: float
    num_classes: int
    logits_std: float
    batch: int
    training_mode: bool
    notes: list[str] = field(default_factory=list)

    @property
    def chance_loss(self) -> float:
        """ln C: the loss of a uniform guess."""
        return math.log(self.num_classes)

    def layer(self, name: str) -> LayerSignal:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def weighted(self) -> list[LayerSignal]:
        """The conv and fully-connected layers only."""
        return [r for r in self.layers if r.weight_std is not None]

    def table(self, weighted_only: bool = False) -> str:
        """Fixed-width text: one line per layer, then the loss and logits lines."""
        header = (f"{'layer':<10} {'act std':>10} {'act rms':>10} {'signal':>7} {'zeros':>6} "
                  f"{'w std':>9} {'grad std':>9} {'grad/w':>9}")
        lines = [header, "-" * len(header)]
        for r in self.weighted() if weighted_only else self.layers:
            w = f"{r.weight_std:9.2e}" if r.weight_std is not None else " " * 9
            g = f"{r.grad_std:9.2e}" if r.grad_std is not None else " " * 9
            q = f"{r.grad_ratio:9.2e}" if r.grad_ratio is not None else " " * 9
            lines.append(f"{r.name:<10} {r.act_std:10.3g} {r.act_rms:10.3g} {r.signal:7.3f} {r.dead:6.2f} {w} {g} {q}")
        lines.append("-" * len(header))
        mode = "loss and gradients in training mode (dropout on)" if self.training_mode else "eval mode"
        lines.append(f"loss {self.loss:.3f} (ln {self.num_classes} = {self.chance_loss:.3f}), "
                     f"logits std {self.logits_std:.3g}, batch {self.batch}, {mode}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "loss": self.loss, "chance_loss": self.chance_loss, "logits_std": self.logits_std,
            "batch": self.batch, "training_mode": self.training_mode, "notes": list(self.notes),
            "layers": [dict(r.__dict__, grad_ratio=r.grad_ratio) for r in self.layers],
        }


def _diagnose(report_layers: list[LayerSignal], loss: float, logits_std: float, num_classes: int) -> list[str]:
    notes = []
    chance = math.log(num_classes)
    if not math.isfinite(loss):
        notes.append("loss is not finite at initialisation")
    elif report_layers and report_layers[-1].signal < 0.05:
        notes.append(f"the logits hardly depend on the image (signal {report_layers[-1].signal:.3f}): the "
                     "first gradients barely reach the conv layers; expect a long plateau at ln C (the bias-1 trap)")
    elif loss > 3 * chance:
        notes.append(f"loss {loss:.1f} is over 3 x ln C: the logits are too large at initialisation "
                     "(expect a loss spike or divergence in the first steps)")
    ratios = [(r.name, r.grad_ratio) for r in report_layers if r.grad_ratio]
    if len(ratios) > 1:
        lo, hi = min(ratios, key=lambda t: t[1]), max(ratios, key=lambda t: t[1])
        if hi[1] > 100 * lo[1]:
            notes.append(f"relative gradient of {hi[0]} is {hi[1] / lo[1]:.0f} x that of {lo[0]}: "
                         f"one learning rate is too large for one or too small for the other")
    return notes


def signal_report(model: nn.Module, images: Tensor, labels: Tensor, *, training_mode: bool = True,
                  autocast: torch.autocast | None = None) -> SignalReport:
    """Measure activation and gradient statistics of ``model`` on one batch.

    ``model`` is a sequential network whose children are its layers (an
    :class:`~alexnet.net.model.AlexNet`); ``images`` a normalised batch as training
    feeds it (``(B, 3, S, S)`` float, e.g. from :class:`alexnet.data.batches.TrainBatches`),
    ``labels`` its ``(B,)`` class indices.  Activity statistics come from a pass
    in eval mode (dropout off); the loss, logits and gradients from a second pass
    in training mode when ``training_mode`` (as the first training step sees
    them).  ``autocast``: an optional autocast context (e.g. bf16).  The model's
    mode and weights are left unchanged, and its gradients as they were.
    """
    children = list(model.named_children())
    if not children:
        raise ValueError("signal_report needs a sequential model whose children are its layers")
    was_training = model.training
    saved_grads = {n: p.grad for n, p in model.named_parameters()}
    context = (lambda: autocast) if autocast is not None else (
        lambda: torch.autocast(images.device.type, enabled=False))
    try:
        # activity: eval mode (dropout off), so that ``signal`` measures the image, not dropout's noise
        model.eval()
        stats = []
        with torch.no_grad(), context():
            x = images
            for name, module in children:
                x = module(x)
                out = x.float()
                rms = float(out.square().mean().sqrt())
                across = float(out.std(dim=0).square().mean().sqrt()) if out.shape[0] > 1 else 0.0
                stats.append((float(out.std()), rms, across / rms if rms > 0 else 0.0, float((out == 0).float().mean())))
        # gradients and loss: as the first step sees them (``training_mode``: dropout on)
        model.train(training_mode)
        for p in model.parameters():
            p.grad = None
        with torch.enable_grad(), context():
            logits = model(images).float()
            loss = nn.functional.cross_entropy(logits, labels)
        loss.backward()
        rows = []
        for (name, module), (std, rms, signal, dead) in zip(children, stats):
            weight = module.weight if isinstance(module, (nn.Conv2d, nn.Linear)) else None
            w_std = g_std = None
            if weight is not None:
                w_std = float(weight.detach().float().std())
                g_std = float(weight.grad.float().std()) if weight.grad is not None else 0.0
            rows.append(LayerSignal(name=name, kind=type(module).__name__, act_std=std, act_rms=rms,
                                    signal=signal, dead=dead, weight_std=w_std, grad_std=g_std))
        logits_std = float(logits.detach().std())
        loss_value = float(loss.detach())
        num_classes = int(logits.shape[1])
    finally:
        for n, p in model.named_parameters():
            p.grad = saved_grads[n]
        model.train(was_training)
    return SignalReport(rows, loss_value, num_classes, logits_std, int(images.shape[0]), training_mode,
                        _diagnose(rows, loss_value, logits_std, num_classes))


def signal_on_store(spec: Any, store_path: str, *, batch: int = 64, seed: int = 0) -> SignalReport:
    """:func:`signal_report` of a freshly initialised network (``spec``, seeded) on the first training batch of a
    store, augmented and normalised as training does (``alexnet summary --data STORE`` prints it)."""
    from alexnet.config import DataConfig
    from alexnet.data.batches import Augmentation, TrainBatches
    from alexnet.data.store import Store
    from alexnet.net.model import build_model

    store = Store(store_path)
    split = store.split("train")
    augment = Augmentation.from_config(DataConfig(crop=spec.input_size), store.stats(), spec.reading)
    images, labels = TrainBatches(split, batch_size=min(batch, len(split)), seed=seed, epoch=0, augment=augment)[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec)
    return signal_report(model, images, labels)
