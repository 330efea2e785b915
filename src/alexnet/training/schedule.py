"""§5 learning-rate schedules: the paper's plateau heuristic and the 2012 run's fixed drops.

Both schedules are called once after each epoch, ``decision = schedule.step(epoch,
val_error)``, where ``epoch`` counts completed epochs (1 after the first) and
``val_error`` is a fraction (0.42, not 42).  The returned :class:`Decision`
gives the learning rate for the *next* epoch and whether to stop.  Apply it with
``schedule.apply(optimizer)``, which sets ``group["lr"] = current_lr *
group.get("lr_scale", 1)`` so per-group ratios (code2012's biases) survive; a
group with ``follows_schedule = False`` (code2012's biases) keeps the initial
rate times its scale.

Hand events (:class:`HandEvent`, the ``code2012`` schedule's
:data:`CODE2012_EVENTS`): the 2012 run's log records changes besides the rate
drops -- conv1's weights' rate divided by 10 and the colour noise switched off
after epoch 67, conv1 frozen after epoch 72.  ``schedule.apply_events(epoch,
optimizer)`` applies every event up to ``epoch`` completed epochs to the groups
of :func:`alexnet.training.optim.param_groups` (``per_layer=True``) and says
whether colour noise stays on; it is idempotent, so a resumed run calls it once
with the epoch it resumes at.

"Stops improving" (§5, "divide the learning rate by 10 when the validation
error rate stopped improving with the current learning rate"), made precise in
:class:`PlateauSchedule`:

* An epoch *improves* when ``best - val_error >= min_improvement`` and
  ``val_error < best``, where ``best`` is the reference error: the error of the
  last improving epoch (``inf`` before the first).  Errors that are lower but not
  by ``min_improvement`` do not move the reference, so a slow creep still counts
  once it has added up to ``min_improvement``.
* ``bad_epochs`` counts epochs since the last improvement *or the last
  reduction*, whichever is later: each new learning rate gets a full
  ``patience`` epochs to beat the best error seen so far.
* When ``bad_epochs`` reaches ``patience`` the plateau is declared: the learning
  rate is divided by ``divisor`` if fewer than ``max_reductions`` reductions have
  been made, otherwise training stops (the paper: "reduced three times prior to
  termination").  Training also stops after ``max_epochs`` epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from alexnet.errors import UserError
from alexnet.paper import CODE2012, LEARNING


@dataclass(frozen=True)
class HandEvent:
    """A change made by hand when epoch ``after_epoch`` completed (as the log's rate drops).

    ``action``: ``"weight_lr"`` multiplies ``layer``'s weights' rate by ``factor``; ``"freeze"`` sets
    every rate of ``layer`` to 0 (the optimiser then leaves it untouched); ``"colour_noise_off"`` stops
    the §4.1 colour noise.
    """

    after_epoch: int
    action: str
    layer: str = ""
    factor: float = 1.0

    def describe(self) -> str:
        what = {"weight_lr": f"{self.layer} weights' rate x {self.factor:g}", "freeze": f"{self.layer} frozen",
                "colour_noise_off": "colour noise off"}[self.action]
        return f"after epoch {self.after_epoch}: {what}"


#: The 2012 run's hand changes besides the rate drops (layer-params-145.cfg's log).
CODE2012_EVENTS: tuple[HandEvent, ...] = (
    HandEvent(CODE2012.conv1_lr_drop_epoch, "weight_lr", "conv1", 1 / LEARNING.lr_divisor),
    HandEvent(CODE2012.colour_noise_off_from_epoch, "colour_noise_off"),
    HandEvent(CODE2012.conv1_frozen_from_epoch, "freeze", "conv1", 0.0),
)
EVENT_ACTIONS: tuple[str, ...] = ("weight_lr", "freeze", "colour_noise_off")


@dataclass(frozen=True)
class Decision:
    """What a schedule decided after ``epoch``: the lr for the next epoch, and whether to stop."""

    epoch: int
    lr: float
    reduced: bool = False
    stop: bool = False
    reason: str = ""
    reductions: int = 0
    bad_epochs: int = 0
    best: float = math.inf
    events: tuple[HandEvent, ...] = ()  # the hand events this epoch's end brings


class _Schedule:
    kind = ""
    lr: float

    def __init__(self, events: tuple[HandEvent, ...] = ()) -> None:
        self._lr = 0.0
        self.last_epoch = 0
        self.reductions = 0
        self.stopped = False
        for e in events:
            if e.action not in EVENT_ACTIONS or e.after_epoch < 1 or (e.action != "colour_noise_off" and not e.layer):
                raise UserError(f"schedule: bad hand event {e}; actions: {', '.join(EVENT_ACTIONS)}")
        self.events = tuple(sorted(events, key=lambda e: e.after_epoch))

    @property
    def current_lr(self) -> float:
        """The base learning rate for the next epoch (before a group's ``lr_scale``)."""
        return self._lr

    def apply(self, optimizer: torch.optim.Optimizer) -> None:
        """Set every group's ``lr`` to ``current_lr * group.get("lr_scale", 1)`` (the initial rate instead of
        ``current_lr`` for a group with ``follows_schedule = False``)."""
        for group in optimizer.param_groups:
            base = self._lr if group.get("follows_schedule", True) else self.lr
            group["lr"] = base * group.get("lr_scale", 1.0)

    def events_after(self, epoch: int) -> tuple[HandEvent, ...]:
        """The hand events due when ``epoch`` completes."""
        return tuple(e for e in self.events if e.after_epoch == epoch)

    def apply_events(self, epoch: int, optimizer: torch.optim.Optimizer) -> bool:
        """Set each group's ``lr_scale`` from the hand events up to ``epoch`` completed epochs (idempotent:
        the scale before any event is kept in ``group["base_lr_scale"]``); returns whether colour noise
        stays on.  Call :meth:`apply` afterwards."""
        due = [e for e in self.events if e.after_epoch <= epoch]
        layers = {g.get("layer") for g in optimizer.param_groups}
        for e in due:
            if e.layer and e.layer not in layers:
                raise UserError(f"schedule: the hand event '{e.describe()}' needs {e.layer}'s own parameter "
                                "groups (param_groups(..., per_layer=True))")
        for group in optimizer.param_groups:
            scale = group.setdefault("base_lr_scale", group.get("lr_scale", 1.0))
            for e in due:
                if e.layer != group.get("layer"):
                    continue
                if e.action == "freeze":
                    scale = 0.0
                elif e.action == "weight_lr" and group.get("kind") == "weight":
                    scale *= e.factor
            group["lr_scale"] = scale
        return not any(e.action == "colour_noise_off" for e in due)

    def set_lr(self, lr: float) -> None:
        """Make ``lr`` the rate from now on (a ``--resume --set optim.lr``); later drops divide it."""
        if not lr > 0:
            raise UserError(f"schedule: lr must be > 0, got {lr}")
        self._lr = float(lr)

    def set_max_epochs(self, epochs: int) -> None:
        """Stop after ``epochs`` completed epochs (a ``--resume --set schedule.max_epochs``)."""
        raise NotImplementedError

    def _check_epoch(self, epoch: int) -> None:
        if epoch <= self.last_epoch:
            raise UserError(
                f"schedule: epoch {epoch} is not after the last epoch seen ({self.last_epoch}); "
                "epochs count completed epochs and must increase"
            )

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: configuration and counters."""
        return dict(
            kind=self.kind,
            config=self._config(),
            lr=self._lr,
            last_epoch=self.last_epoch,
            reductions=self.reductions,
            stopped=self.stopped,
            **self._extra_state(),
        )

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise UserError(f"schedule: the saved state is of kind {state.get('kind')!r}, not {self.kind!r}")
        for key, value in state["config"].items():
            setattr(self, key, tuple(value) if isinstance(value, list) else value)
        self._lr = float(state["lr"])
        self.last_epoch = int(state["last_epoch"])
        self.reductions = int(state["reductions"])
        self.stopped = bool(state["stopped"])
        self._load_extra(state)

    def _load_extra(self, state: dict[str, Any]) -> None:
        pass


class PlateauSchedule(_Schedule):
    """§5: divide the learning rate by ``divisor`` when the validation error stops improving.

    See the module docstring for the exact definition of a plateau.
    ``patience`` >= 1 epochs; ``min_improvement`` >= 0, absolute, in error fraction.
    """

    kind = "plateau"

    def __init__(
        self,
        lr: float = LEARNING.lr,
        divisor: float = LEARNING.lr_divisor,
        max_reductions: int = LEARNING.lr_reductions,
        *,
        patience: int,
        min_improvement: float,
        max_epochs: int = LEARNING.epochs,
    ) -> None:
        super().__init__()
        if patience < 1:
            raise UserError(f"plateau schedule: patience must be at least 1 epoch, got {patience}")
        if min_improvement < 0:
            raise UserError(f"plateau schedule: min_improvement must be >= 0, got {min_improvement}")
        if divisor <= 1:
            raise UserError(f"plateau schedule: divisor must be > 1, got {divisor}")
        if lr <= 0 or max_epochs < 1 or max_reductions < 0:
            raise UserError("plateau schedule: lr must be > 0, max_epochs >= 1 and max_reductions >= 0")
        self.lr = float(lr)
        self.divisor = float(divisor)
        self.max_reductions = int(max_reductions)
        self.patience = int(patience)
        self.min_improvement = float(min_improvement)
        self.max_epochs = int(max_epochs)
        self._lr = self.lr
        self.best = math.inf
        self.bad_epochs = 0

    def _config(self) -> dict[str, Any]:
        return dict(
            lr=self.lr,
            divisor=self.divisor,
            max_reductions=self.max_reductions,
            patience=self.patience,
            min_improvement=self.min_improvement,
            max_epochs=self.max_epochs,
        )

    def _extra_state(self) -> dict[str, Any]:
        return dict(best=self.best, bad_epochs=self.bad_epochs)

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])

    def set_max_epochs(self, epochs: int) -> None:
        self.max_epochs = int(epochs)

    def improves(self, val_error: float) -> bool:
        """Whether ``val_error`` counts as an improvement on the reference ``best``."""
        return val_error < self.best and self.best - val_error >= self.min_improvement

    def step(self, epoch: int, val_error: float) -> Decision:
        self._check_epoch(epoch)
        if not math.isfinite(val_error):
            raise UserError(f"plateau schedule: validation error must be a finite number, got {val_error}")
        self.last_epoch = epoch
        if self.stopped:
            return self._decision(epoch, stop=True, reason="already stopped")
        reduced, stop, reason = False, False, ""
        if self.improves(val_error):
            self.best = float(val_error)
            self.bad_epochs = 0
            reason = "improved"
        else:
            self.bad_epochs += 1
            reason = f"no improvement for {self.bad_epochs} epoch(s)"
            if self.bad_epochs >= self.patience:
                if self.reductions < self.max_reductions:
                    self._lr /= self.divisor
                    self.reductions += 1
                    self.bad_epochs = 0
                    reduced = True
                    reason = f"plateau: reduction {self.reductions} of {self.max_reductions}"
                else:
                    stop = True
                    reason = f"plateau after {self.reductions} reductions"
        if not stop and epoch >= self.max_epochs:
            stop, reason = True, f"reached max_epochs {self.max_epochs}"
        self.stopped = stop
        return self._decision(epoch, reduced=reduced, stop=stop, reason=reason)

    def _decision(self, epoch: int, reduced: bool = False, stop: bool = False, reason: str = "") -> Decision:
        return Decision(epoch, self._lr, reduced, stop, reason, self.reductions, self.bad_epochs, self.best)


class FixedSchedule(_Schedule):
    """Divide the learning rate by ``divisor`` after each epoch in ``drop_epochs``; stop after ``stop_epoch``.

    After epoch ``e`` completes, the learning rate for epoch ``e + 1`` is
    ``lr / divisor ** (number of drop epochs <= e)``.  :meth:`code2012` is the
    authors' hand schedule: drops after epochs ``CODE2012.lr_drop_epochs``, stop
    after ``CODE2012.stop_epoch``.  ``val_error`` is recorded but not used.
    """

    kind = "fixed"

    def __init__(
        self,
        lr: float = LEARNING.lr,
        drop_epochs: tuple[int, ...] = CODE2012.lr_drop_epochs,
        divisor: float = LEARNING.lr_divisor,
        stop_epoch: int = CODE2012.stop_epoch,
        events: tuple[HandEvent, ...] = (),
    ) -> None:
        super().__init__(events)
        drops = tuple(int(e) for e in drop_epochs)
        if list(drops) != sorted(set(drops)) or any(e < 1 for e in drops):
            raise UserError(f"fixed schedule: drop_epochs must be increasing positive epochs, got {drops}")
        if divisor <= 1 or lr <= 0 or stop_epoch < 1:
            raise UserError("fixed schedule: lr must be > 0, divisor > 1 and stop_epoch >= 1")
        self.lr = float(lr)
        self.drop_epochs = drops
        self.divisor = float(divisor)
        self.stop_epoch = int(stop_epoch)
        self._lr = self.lr

    @classmethod
    def code2012(cls, lr: float = LEARNING.lr) -> "FixedSchedule":
        """The 2012 run: 0.01, /10 after epochs 25, 51 and 79, stop after epoch 91, and its hand events
        (:data:`CODE2012_EVENTS`), all from paper.CODE2012."""
        return cls(lr, CODE2012.lr_drop_epochs, LEARNING.lr_divisor, CODE2012.stop_epoch, CODE2012_EVENTS)

    def _config(self) -> dict[str, Any]:
        return dict(lr=self.lr, drop_epochs=list(self.drop_epochs), divisor=self.divisor, stop_epoch=self.stop_epoch)

    def set_lr(self, lr: float) -> None:
        super().set_lr(lr)
        self.lr = self._lr * self.divisor ** sum(1 for e in self.drop_epochs if e <= self.last_epoch)

    def set_max_epochs(self, epochs: int) -> None:
        self.stop_epoch = int(epochs)

    def lr_after(self, epoch: int) -> float:
        """The base learning rate used for the epoch after ``epoch`` completed epochs."""
        drops = sum(1 for e in self.drop_epochs if e <= epoch)
        return self.lr / self.divisor**drops

    def step(self, epoch: int, val_error: float | None = None) -> Decision:
        self._check_epoch(epoch)
        self.last_epoch = epoch
        new_lr = self.lr_after(epoch)
        reduced = new_lr != self._lr
        self._lr = new_lr
        self.reductions = sum(1 for e in self.drop_epochs if e <= epoch)
        stop = epoch >= self.stop_epoch
        self.stopped = stop
        reason = f"reached stop_epoch {self.stop_epoch}" if stop else ("drop epoch" if reduced else "")
        return Decision(epoch, self._lr, reduced, stop, reason, self.reductions, events=self.events_after(epoch))


SCHEDULE_KINDS: tuple[str, ...] = ("plateau", "fixed", "code2012")


def make_schedule(kind: str, **options: Any) -> PlateauSchedule | FixedSchedule:
    """Build a schedule: ``plateau`` (§5), ``fixed`` (explicit drop epochs) or ``code2012`` (the 2012 run)."""
    classes = {"plateau": PlateauSchedule, "fixed": FixedSchedule, "code2012": FixedSchedule.code2012}
    if kind not in classes:
        raise UserError(f"schedule: unknown kind {kind!r}; allowed: {', '.join(SCHEDULE_KINDS)}")
    try:
        return classes[kind](**options)
    except TypeError as err:
        raise UserError(f"schedule {kind!r}: bad options {sorted(options)}: {err}") from None



def schedule_from_config(config: Any) -> PlateauSchedule | FixedSchedule:
    """The §5 schedule a config asks for (``plateau``, ``fixed`` or the 2012 run's ``code2012``)."""
    s, lr = config.schedule, config.optim.lr
    if s.kind == "plateau":
        return make_schedule("plateau", lr=lr, divisor=s.divisor, max_reductions=s.max_reductions,
                             patience=s.patience, min_improvement=s.min_improvement, max_epochs=s.max_epochs)
    if s.kind == "fixed":
        return make_schedule("fixed", lr=lr, drop_epochs=tuple(s.drop_epochs), divisor=s.divisor,
                             stop_epoch=s.max_epochs)
    return make_schedule(s.kind, lr=lr)
