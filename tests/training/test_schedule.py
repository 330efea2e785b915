"""§5 schedules: the plateau heuristic, the 2012 fixed drops, exact resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from alexnet.errors import UserError
from alexnet.paper import CODE2012, LEARNING
from alexnet.training.schedule import FixedSchedule, HandEvent, PlateauSchedule, make_schedule

DIV = LEARNING.lr_divisor


def test_patience_and_reduction():
    s = PlateauSchedule(patience=2, min_improvement=0.0)
    assert s.current_lr == LEARNING.lr
    assert not s.step(1, 0.9).reduced
    assert not s.step(2, 0.8).reduced  # improved
    assert not s.step(3, 0.8).reduced  # equal is not an improvement: 1 bad epoch
    d = s.step(4, 0.85)  # 2 bad epochs -> reduce
    assert d.reduced and not d.stop and d.reductions == 1
    assert s.current_lr == pytest.approx(LEARNING.lr / DIV)
    assert not s.step(5, 0.81).reduced  # counter restarted after the reduction
    assert s.step(6, 0.81).reduced  # 0.81 never beat best 0.8


def test_min_improvement_is_absolute_and_accumulates():
    s = PlateauSchedule(patience=2, min_improvement=0.01)
    s.step(1, 0.50)
    d = s.step(2, 0.495)  # better, but by less than 0.01: a bad epoch
    assert d.bad_epochs == 1 and d.best == 0.50
    d = s.step(3, 0.489)  # 0.011 below the reference: counts
    assert d.bad_epochs == 0 and d.best == 0.489
    s.step(4, 0.485)
    assert s.step(5, 0.484).reduced


def test_three_reductions_then_stop():
    s = PlateauSchedule(patience=1, min_improvement=0.0)
    s.step(1, 0.5)
    decisions = [s.step(e, 0.5) for e in range(2, 6)]
    assert [d.reduced for d in decisions] == [True] * LEARNING.lr_reductions + [False]
    assert [d.stop for d in decisions] == [False] * LEARNING.lr_reductions + [True]
    assert s.current_lr == pytest.approx(LEARNING.lr / DIV**LEARNING.lr_reductions)
    assert s.step(6, 0.1).stop  # stays stopped


def test_max_epochs_cap():
    s = PlateauSchedule(patience=5, min_improvement=0.0, max_epochs=3)
    assert [s.step(e, 1.0 - e / 10).stop for e in (1, 2, 3)] == [False, False, True]
    assert PlateauSchedule(patience=1, min_improvement=0).max_epochs == LEARNING.epochs


def test_epochs_must_increase():
    s = PlateauSchedule(patience=1, min_improvement=0.0)
    s.step(1, 0.5)
    with pytest.raises(UserError):
        s.step(1, 0.4)


def test_fixed_code2012_preset():
    s = make_schedule("code2012")
    lrs, stops = {}, {}
    for e in range(1, CODE2012.stop_epoch + 1):
        d = s.step(e, 0.5)
        lrs[e], stops[e] = d.lr, d.stop
    first, second, third = CODE2012.lr_drop_epochs
    assert lrs[first - 1] == LEARNING.lr and lrs[first] == pytest.approx(LEARNING.lr / DIV)
    assert lrs[second] == pytest.approx(LEARNING.lr / DIV**2)
    assert lrs[third] == pytest.approx(LEARNING.lr / DIV**3)
    assert not any(stops[e] for e in range(1, CODE2012.stop_epoch))
    assert stops[CODE2012.stop_epoch]
    assert s.reductions == len(CODE2012.lr_drop_epochs)


def _errors():
    g = torch.Generator().manual_seed(0)
    base = torch.linspace(0.9, 0.4, 40)
    noise = (torch.rand(40, generator=g) - 0.5) * 0.04
    return [round(float(x), 4) for x in (base + noise)] + [0.4] * 40


@pytest.mark.parametrize(
    "factory",
    [
        lambda: PlateauSchedule(patience=3, min_improvement=0.005),
        lambda: FixedSchedule(LEARNING.lr, (10, 20, 30), DIV, 60),
    ],
)
def test_state_round_trip_at_any_point(factory):
    errors = _errors()
    ref = factory()
    ref_decisions = []
    for e, err in enumerate(errors, 1):
        ref_decisions.append(ref.step(e, err))
        if ref_decisions[-1].stop:
            break
    for cut in range(0, len(ref_decisions)):
        s = factory()
        for e in range(1, cut + 1):
            s.step(e, errors[e - 1])
        state = json.loads(json.dumps(copy.deepcopy(s.state_dict())))  # survives JSON too
        resumed = factory()
        resumed.load_state_dict(state)
        assert resumed.current_lr == s.current_lr
        for e in range(cut + 1, len(ref_decisions) + 1):
            assert resumed.step(e, errors[e - 1]) == ref_decisions[e - 1], f"cut {cut}, epoch {e}"


def test_apply_keeps_group_ratio():
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD(
        [dict(params=[p1], lr_scale=1.0), dict(params=[p2], lr_scale=CODE2012.bias_lr_multiplier)], lr=1.0
    )
    s = PlateauSchedule(patience=1, min_improvement=0.0)
    s.step(1, 0.5)
    s.step(2, 0.5)
    s.apply(opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(LEARNING.lr / DIV)
    assert opt.param_groups[1]["lr"] == pytest.approx(LEARNING.lr / DIV * CODE2012.bias_lr_multiplier)


def test_factory_errors_and_kind_mismatch():
    with pytest.raises(UserError, match="plateau, fixed, code2012"):
        make_schedule("cosine")
    with pytest.raises(UserError):
        make_schedule("plateau", patience=2)  # min_improvement missing
    with pytest.raises(UserError):
        PlateauSchedule(patience=0, min_improvement=0.0)
    fixed = make_schedule("fixed", drop_epochs=(2, 4), stop_epoch=6)
    with pytest.raises(UserError):
        PlateauSchedule(patience=1, min_improvement=0.0).load_state_dict(fixed.state_dict())


def test_code2012_hand_events_on_the_layers_groups():
    """layer-params-145.cfg's log: after epoch 67 conv1's epsW / 10 and colour noise 0; after 72 conv1's rate 0.
    Applied to code2012's per-layer groups, at the rates the log names (0.0001 -> 0.00001 on conv1)."""
    from alexnet.net.model import ModelSpec, build_model
    from alexnet.training.optim import PaperSGD, param_groups

    model = build_model(ModelSpec(reading="code2012", input_size=16, width=0.125, fc_units=32, num_classes=4))
    opt = PaperSGD(param_groups(model, "code2012", 0.01, 0.0005, 0.9))
    s = make_schedule("code2012", lr=0.01)
    noise_on = {}
    rates = {}
    for epoch in range(1, 80):
        d = s.step(epoch, 0.5)
        noise_on[epoch] = s.apply_events(epoch, opt)
        s.apply(opt)
        rates[epoch] = {g["name"]: g["lr"] for g in opt.param_groups}
        assert [e.after_epoch for e in d.events] == {67: [67, 67], 72: [72]}.get(epoch, [])
    assert all(noise_on[e] for e in range(1, 67)) and not any(noise_on[e] for e in range(67, 80))
    assert rates[66]["conv1.weight"] == pytest.approx(0.0001) == rates[66]["conv2.weight"]
    assert rates[67]["conv1.weight"] == pytest.approx(0.00001) and rates[67]["conv2.weight"] == pytest.approx(0.0001)
    assert rates[71]["conv1.bias"] == 0.02 == rates[72]["conv2.bias"]  # epsw only, biases keep 0.02
    assert rates[72]["conv1.weight"] == 0 and rates[72]["conv1.bias"] == 0  # frozen
    assert rates[79]["conv1.weight"] == 0 and rates[79]["fc8.weight"] == pytest.approx(0.00001)
    # idempotent: applying the events again (as a resumed run does) changes nothing
    assert not s.apply_events(79, opt)
    s.apply(opt)
    assert {g["name"]: g["lr"] for g in opt.param_groups} == rates[79]


def test_hand_events_need_the_layers_own_groups():
    from alexnet.net.model import ModelSpec, build_model
    from alexnet.training.optim import PaperSGD, param_groups

    model = build_model(ModelSpec(input_size=16, width=0.125, fc_units=32, num_classes=4))
    opt = PaperSGD(param_groups(model, "paper", 0.01, 0.0005, 0.9))
    s = make_schedule("code2012", lr=0.01)
    assert s.apply_events(66, opt)  # nothing due yet
    with pytest.raises(UserError, match="conv1's own parameter groups"):
        s.apply_events(67, opt)
    with pytest.raises(UserError, match="bad hand event"):
        FixedSchedule(events=(HandEvent(3, "sleep", "conv1"),))
