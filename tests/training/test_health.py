"""Health checks: a slow start is not stopped, an explosion rolls back with a lower rate, a NaN stops."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.net.model import AlexNet
from alexnet.training.health import HealthError, HealthMonitor
from alexnet.training.trainer import train
from helpers import tiny_config


def test_a_slow_start_that_is_falling_is_not_stopped() -> None:
    # ln(200) = 5.2983; the band is 2% of it, 0.1060.  A loss falling linearly from 5.30 to 5.15 over the
    # window has mean 5.225 (inside the band) but its second half is 0.075 lower than its first (> 0.053).
    steps = 500
    falling = np.linspace(5.30, 5.15, steps)
    m = HealthMonitor(num_classes=200, window=steps)
    for step, loss in enumerate(falling, 1):
        assert m.observe(float(loss), step) is None
    # the same mean, flat (with a little noise): stuck
    flat = 5.225 + 0.01 * np.random.default_rng(0).standard_normal(steps)
    m = HealthMonitor(num_classes=200, window=steps)
    with pytest.raises(HealthError, match=r"stayed at ln\(200\)"):
        for step, loss in enumerate(flat, 1):
            m.observe(float(loss), step)


def test_an_explosion_is_a_loss_far_above_its_median_or_a_gradient_spike() -> None:
    m = HealthMonitor(num_classes=10, window=0)  # ln(10) = 2.3026
    for step in range(1, 31):
        assert m.observe(0.6, step, grad_norm=1.0) is None
    # threshold: more than 2 x 0.6 and more than 0.6 + 2.3026 = 2.9026
    assert m.observe(2.85, 31, grad_norm=1.0) is None
    assert "against a recent median of 0.6" in m.observe(2.95, 32, grad_norm=1.0)
    assert m.observe(0.6, 33, grad_norm=19.0) is None  # under 20 x the median norm
    assert "gradient norm 25" in m.observe(0.6, 34, grad_norm=25.0)
    assert "gradient norm became inf" in m.observe(0.6, 35, grad_norm=math.inf)
    with pytest.raises(HealthError, match="loss became nan at step 36"):
        m.observe(math.nan, 36)


def test_no_explosion_check_before_enough_history() -> None:
    m = HealthMonitor(num_classes=10, window=0)
    for step in range(1, 20):  # 19 steps: fewer than min_history
        assert m.observe(0.5 if step < 19 else 50.0, step) is None


class Exploder:
    """Multiplies the network's output by 1000 on the given training steps' forward calls (a finite explosion).

    The signal report before the first step also runs the network in training mode: it is not counted.
    """

    def __init__(self, monkeypatch, calls: set[int]) -> None:
        from alexnet.training import trainer as trainer_module

        self.n, self.calls, self.paused = 0, calls, False
        original, report = AlexNet.forward, trainer_module.report_signal

        def forward(net, x):
            out = original(net, x)
            if net.training and not self.paused:
                self.n += 1
                if self.n in self.calls:
                    return out * 1000.0
            return out

        def quiet_report(*args, **kwargs):
            self.paused = True
            try:
                return report(*args, **kwargs)
            finally:
                self.paused = False

        monkeypatch.setattr(AlexNet, "forward", forward)
        monkeypatch.setattr(trainer_module, "report_signal", quiet_report)


def events(run: Path, name: str) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("event") == name]


def test_an_explosion_rolls_back_lowers_the_rate_and_training_goes_on(tiny_store, tmp_path: Path, monkeypatch,
                                                                       capsys) -> None:
    Exploder(monkeypatch, {30})
    run = tmp_path / "run"
    state = train(tiny_config(tiny_store.path, "schedule.max_epochs=6", 'schedule.kind="fixed"',
                              "run.snapshot_every=10", "run.log_every=1"), run, progress=False)
    (rollback,) = events(run, "rollback")
    assert rollback["step"] == 30 and rollback["restored_step"] == 10  # the older of the snapshots at 10 and 20
    assert rollback["lr_factor"] == 0.5 and rollback["lr"] == pytest.approx(0.05 * 0.5)
    assert "rolled back to the weights of step 10" in capsys.readouterr().err
    assert state.done and state.lr_factor == 0.5 and state.rollbacks == 1
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"kind": "step"' in line]
    assert all(s["lr"] == pytest.approx(0.025) for s in steps if s["step"] >= 30)
    assert all(s["lr"] == pytest.approx(0.05) for s in steps if s["step"] < 30)


def test_the_exploding_step_is_not_applied(tiny_store, tmp_path: Path, monkeypatch) -> None:
    """Rolled back at step 25 to the snapshot of step 0: the weights equal the initial ones then."""
    Exploder(monkeypatch, {25})
    seen = {}
    from alexnet.training import trainer as trainer_module

    original = trainer_module.Trainer._roll_back

    def spy(self, reason, loss):
        original(self, reason, loss)
        seen["after"] = {k: v.clone() for k, v in self.model.state_dict().items()}

    monkeypatch.setattr(trainer_module.Trainer, "_roll_back", spy)
    cfg = tiny_config(tiny_store.path, 'schedule.kind="fixed"', "schedule.max_epochs=6", "run.snapshot_every=100",
                      "run.max_steps=25")
    torch.manual_seed(0)
    t = trainer_module.Trainer(cfg, tmp_path / "run", progress=False)
    initial = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.fit()
    for k, v in initial.items():
        assert torch.equal(seen["after"][k], v), k


def test_too_many_explosions_stop_with_one_line(tiny_store, tmp_path: Path, monkeypatch) -> None:
    Exploder(monkeypatch, {25, 26, 27})
    with pytest.raises(HealthError, match=r"exploded at step 27 .* 3th time.*Try a smaller optim.lr"):
        train(tiny_config(tiny_store.path, "schedule.max_epochs=6", "run.max_rollbacks=2"), tmp_path / "run",
              progress=False)


def test_nan_stops_and_says_what_is_kept(tiny_store, tmp_path: Path) -> None:
    with pytest.raises(HealthError, match="loss became (nan|inf).*No checkpoint had been written yet"):
        train(tiny_config(tiny_store.path, "optim.lr=1e12"), tmp_path / "run", progress=False)
