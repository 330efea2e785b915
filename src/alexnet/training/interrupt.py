"""Ctrl-C while training: finish the step, write a checkpoint, then stop (exit status 130 on the command line).

:class:`Interrupt` replaces the SIGINT (and SIGTERM) handler while a run trains: the
first signal only sets :attr:`Interrupt.requested`, which the trainer reads after each
step (agreed across ranks under torchrun) and at each evaluation batch; it then saves
``last.pt`` and raises :class:`KeyboardInterrupt`.  A second Ctrl-C interrupts at once
(the previous checkpoint stays intact: checkpoints are written atomically).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any


class Interrupt:
    """SIGINT / SIGTERM as a request to stop at the next safe point."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def install(self) -> "Interrupt":
        """Take over the signals (only the main thread may; elsewhere this does nothing)."""
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


def stop_interrupted(trainer: Any, bar: Any = None) -> None:
    """The signal came: checkpoint the trainer's state after its last whole step, log it, raise KeyboardInterrupt."""
    if bar is not None:
        bar.close()
    trainer.save_checkpoint()
    state = trainer.state
    trainer.log.write({"kind": "event", "event": "interrupted", "signal": trainer.interrupt.signal_name,
                       "step": state.step, "epoch": state.epoch + 1, "batch": state.batch})
    if trainer.ctx.main:
        print(f"interrupted at step {state.step}: saved {trainer.run_dir / 'checkpoints' / 'last.pt'}; continue "
              f"with `alexnet train --resume {trainer.run_dir}`", file=sys.stderr)
    raise KeyboardInterrupt
