"""Health checks while training: a loss that is not finite, or that stays at chance.

§5's initialisation (bias 1 with weights of std 0.01) is known to leave some runs
at the loss of a uniform guess, ln(num_classes), for ever (BVLC/caffe#59); a run
like that must be reported, not silently continued.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from alexnet.errors import UserError


class HealthError(UserError):
    """Training stopped because the loss is not finite or is not moving."""


@dataclass
class HealthMonitor:
    """Detects a NaN/inf loss at once and a loss stuck at ln(num_classes) within ``window`` steps.

    The stuck check is the known failure of §5's initialisation (bias 1 with std
    0.01, BVLC/caffe#59): the mean loss of the last ``window`` steps within
    ``tolerance`` (relative) of ln(num_classes), the loss of a uniform guess.
    """

    num_classes: int
    window: int
    tolerance: float = 0.02
    recent: deque = field(default_factory=deque)

    def check(self, loss: float, step: int) -> None:
        if not math.isfinite(loss):
            raise HealthError(
                f"loss became {loss} at step {step}: training diverged. Try a smaller learning rate "
                f"(--set optim.lr=...), or resume from an earlier checkpoint; the last good checkpoint is kept"
            )
        if self.window <= 0:
            return
        self.recent.append(loss)
        if len(self.recent) > self.window:
            self.recent.popleft()
        chance = math.log(self.num_classes)
        if len(self.recent) == self.window and abs(sum(self.recent) / self.window - chance) < self.tolerance * chance:
            raise HealthError(
                f"loss has stayed at ln({self.num_classes}) = {chance:.3f} for {self.window} steps (up to step {step}): "
                "the network is not learning. This is the known failure of bias 1 with weights of std 0.01; try "
                "--set optim.lr=... (smaller or larger), --reading code2012 (std 0.03 in conv3-5), or a longer "
                "run.health_window if it is just slow to start"
            )
