"""Health checks while training: a loss that is not finite, that explodes, or that stays at chance.

Three failures are told apart (:class:`HealthMonitor` looks at each step *before*
its update is applied):

* **not finite** -- a NaN or infinite loss stops the run at once (:class:`HealthError`).
* **explosion** -- a finite loss far above its recent median (more than twice the
  median and more than ``ln(C)`` above it), or a gradient norm more than
  ``grad_factor`` times its recent median: the step is not applied and the trainer
  rolls back to an earlier in-memory state with a lower learning rate
  (:meth:`HealthMonitor.observe` returns the reason).
* **stuck at chance** -- §5's initialisation (bias 1 with weights of std 0.01) is
  known to leave some runs at the loss of a uniform guess, ln(C), for ever
  (BVLC/caffe#59).  The run stops when the mean loss of the last ``window`` steps is
  within ``tolerance`` (relative) of ln(C) *and* is not falling: the second half of the
  window must be lower than the first by at least half the tolerance band, or the run
  is stuck.  A slow start that is trending down is left alone.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from typing import Any

from alexnet.errors import UserError


class HealthError(UserError):
    """Training stopped because the loss is not finite, kept exploding, or is not moving."""


@dataclass
class HealthMonitor:
    """Watches each step's loss (and gradient norm) for the failures of the module docstring.

    ``window``: steps of the stuck-at-chance check (0 switches it off).
    ``spike_window``: recent steps whose median the explosion checks compare with.
    """

    num_classes: int
    window: int
    tolerance: float = 0.02
    spike_window: int = 100
    min_history: int = 20  # steps seen before the explosion checks start
    grad_factor: float = 20.0
    recent: deque = field(default_factory=deque)  # losses of the stuck check
    history: deque = field(default_factory=deque)  # losses of the explosion check
    grad_norms: deque = field(default_factory=deque)

    def state_dict(self) -> dict[str, Any]:
        """The recent losses and gradient norms (saved in checkpoints, so a resume judges as before)."""
        return {"recent": list(self.recent), "history": list(self.history), "grad_norms": list(self.grad_norms)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("recent", "history", "grad_norms"):
            setattr(self, name, deque(float(v) for v in state.get(name, [])))

    @property
    def chance(self) -> float:
        """The loss of a uniform guess, ln(C)."""
        return math.log(self.num_classes)

    def observe(self, loss: float, step: int, grad_norm: float | None = None) -> str | None:
        """Check one step before its update; returns why it is an explosion (roll back), else None.

        Raises :class:`HealthError` for a loss that is not finite or stuck at chance.
        """
        if not math.isfinite(loss):
            raise HealthError(f"loss became {loss} at step {step}: training diverged")
        reason = self._explosion(loss, grad_norm)
        if reason:
            return reason  # an explosion is not history: the medians stay those of the healthy steps
        self._remember(self.history, loss, self.spike_window)
        if grad_norm is not None:
            self._remember(self.grad_norms, grad_norm, self.spike_window)
        self._check_stuck(loss, step)
        return None

    def _explosion(self, loss: float, grad_norm: float | None) -> str | None:
        if grad_norm is not None and not math.isfinite(grad_norm):
            return f"the gradient norm became {grad_norm}"
        if len(self.history) >= self.min_history:
            median = _median(self.history)
            if loss > 2 * median and loss > median + self.chance:
                return f"loss {loss:.4g} against a recent median of {median:.4g}"
        if grad_norm is not None and len(self.grad_norms) >= self.min_history:
            median = _median(self.grad_norms)
            if grad_norm > self.grad_factor * median:
                return f"gradient norm {grad_norm:.4g} against a recent median of {median:.4g}"
        return None

    def _check_stuck(self, loss: float, step: int) -> None:
        if self.window <= 0:
            return
        self._remember(self.recent, loss, self.window)
        if len(self.recent) < self.window:
            return
        values = list(self.recent)
        mean = sum(values) / len(values)
        band = self.tolerance * self.chance
        if abs(mean - self.chance) >= band:
            return
        half = len(values) // 2
        falling = sum(values[:half]) / half - sum(values[half:]) / (len(values) - half)
        if falling >= band / 2:
            return  # a slow start, trending down: not stuck
        raise HealthError(
            f"loss has stayed at ln({self.num_classes}) = {self.chance:.3f} for {self.window} steps "
            f"(up to step {step}, mean {mean:.3f}, falling {falling:.4f} from the first half to the second): the "
            "network is not learning. This is the known failure of bias 1 with weights of std 0.01; try another "
            "learning rate (optim.lr), model.init = \"scaled\", the code2012 reading (std 0.03 in conv3-5), or a "
            "longer run.health_window if it is just slow to start"
        )

    @staticmethod
    def _remember(values: deque, value: float, size: int) -> None:
        values.append(value)
        while len(values) > size:
            values.popleft()


def _median(values: deque) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


class Snapshots:
    """The newest two in-memory copies (on the CPU) of a network's weights and its optimizer's state.

    A roll-back returns to the *older* one, taken at least ``run.snapshot_every`` steps
    before the explosion, since the steps just before an explosion are often already bad.
    """

    def __init__(self, model: Any, optimizer: Any, keep: int = 2) -> None:
        self.model, self.optimizer = model, optimizer
        self.saved: deque = deque(maxlen=keep)

    def take(self, step: int) -> None:
        weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.saved.append((step, weights, cpu_copy(self.optimizer.state_dict())))

    def restore_oldest(self) -> int:
        """Load the oldest snapshot into the network and optimizer, forget all; returns its step."""
        step, weights, optimizer = self.saved[0]
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(optimizer)
        self.saved.clear()
        return step


def cpu_copy(obj: Any) -> Any:
    """A deep copy of ``obj`` with every tensor copied to the CPU (an optimizer state, for a snapshot)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def grad_norm(model: Any) -> float:
    """The global L2 norm of a network's gradients (0 before any backward pass)."""
    import torch

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float()))


def report_signal(model: Any, batch: Any, run_dir: Any, autocast: Any) -> Any:
    """Before the first step: how the image's signal and the gradients propagate at initialisation.

    Writes ``RUN/signal.txt`` (:func:`alexnet.net.propagation.signal_report`'s table) and
    returns the report; the global random state is left as it was, so training is unchanged.
    """
    import torch

    from alexnet.net.propagation import signal_report

    images, labels = batch
    with torch.random.fork_rng(devices=[]):
        report = signal_report(model, images, labels, autocast=autocast)
    (run_dir / "signal.txt").write_text(report.table() + "\n")
    return report


def roll_back(trainer: Any, reason: str, loss: float) -> None:
    """An explosion at the coming step: return ``trainer`` to its older snapshot and lower the rate.

    At most ``run.max_rollbacks`` times; one more is a :class:`HealthError` naming the step,
    the loss and what to try.  Each roll-back is an event in ``metrics.jsonl`` and a line on screen.
    """
    import sys

    step, state, run = trainer.state.step + 1, trainer.state, trainer.config.run
    state.rollbacks += 1
    if state.rollbacks > run.max_rollbacks:
        raise HealthError(
            f"training exploded at step {step} ({reason}) for the {state.rollbacks}th time; each time it "
            f"rolled back and lowered the learning rate (now {trainer.lr:.3g}). Try a smaller optim.lr, another "
            f"model.init, or a smaller optim.batch_size"
        )
    restored = trainer.snapshots.restore_oldest()
    state.lr_factor *= run.rollback_lr_factor
    trainer._apply_lr()
    trainer.snapshots.take(state.step)
    trainer.log.write({"kind": "event", "event": "rollback", "step": step, "loss": loss, "reason": reason,
                       "restored_step": restored, "lr": trainer.lr, "lr_factor": state.lr_factor,
                       "rollback": state.rollbacks})
    if trainer.ctx.main:
        print(f"step {step}: {reason}: rolled back to the weights of step {restored} and lowered the learning "
              f"rate to {trainer.lr:.3g} (roll-back {state.rollbacks} of at most {run.max_rollbacks})",
              file=sys.stderr)
