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


def test_the_edges_of_the_allowed_settings():
    """Patience 1, min_improvement 0 and 0.5, divisor 1.5, max_epochs 1, no reductions, a drop after epoch 1 and
    a hand event after epoch 1 are allowed; rate 0, divisor 1, max_epochs 0, -1 reductions, drop epochs out of
    order or at 0, a stop at epoch 0 and a hand event at epoch 0 or of an unknown kind are not."""
    PlateauSchedule(patience=1, min_improvement=0.0, divisor=1.5, max_epochs=1, max_reductions=0)
    PlateauSchedule(patience=1, min_improvement=0.5)
    FixedSchedule(0.01, (1,), 1.5, 1, events=(HandEvent(1, "freeze", "conv1"),))
    bad_plateau = [dict(lr=0.0), dict(divisor=1.0), dict(max_epochs=0), dict(max_reductions=-1)]
    for options in bad_plateau:
        with pytest.raises(UserError):
            PlateauSchedule(patience=1, min_improvement=0.0, **options)
    bad_fixed = [dict(lr=0.0), dict(divisor=1.0), dict(stop_epoch=0), dict(drop_epochs=(3, 2)), dict(drop_epochs=(0,)),
                 dict(events=(HandEvent(0, "freeze", "conv1"),)), dict(events=(HandEvent(2, "thaw", "conv1"),)),
                 dict(events=(HandEvent(2, "freeze"),))]
    for options in bad_fixed:
        with pytest.raises(UserError):
            FixedSchedule(**{"lr": 0.01, "drop_epochs": (2,), "divisor": 10.0, "stop_epoch": 5, **options})
    s = PlateauSchedule(patience=1, min_improvement=0.0)
    with pytest.raises(UserError):
        s.set_lr(0.0)
    with pytest.raises(UserError):
        s.step(1, float("nan"))


def test_plateau_counts_bad_epochs_one_at_a_time_and_reduces_at_patience():
    s = PlateauSchedule(lr=1.0, divisor=4.0, max_reductions=2, patience=3, min_improvement=0.0, max_epochs=20)
    assert s.step(1, 0.5).bad_epochs == 0
    assert [s.step(e, 0.6).bad_epochs for e in (2, 3)] == [1, 2]
    d = s.step(4, 0.6)  # the third bad epoch: reduce by 4, counter back to 0
    assert (d.reduced, d.lr, d.reductions, d.bad_epochs, d.best) == (True, 0.25, 1, 0, 0.5)
    assert s.step(5, 0.4).best == 0.4  # improvements move the reference
    for e in (6, 7, 8):
        d = s.step(e, 0.4)
    assert (d.reduced, d.lr, d.reductions) == (True, 1 / 16, 2)
    decisions = [s.step(e, 0.4) for e in (9, 10, 11)]
    assert [d.stop for d in decisions] == [False, False, True] and decisions[-1].lr == 1 / 16  # no third reduction


def test_plateau_stops_at_max_epochs_not_before():
    s = PlateauSchedule(patience=10, min_improvement=0.0, max_epochs=2)
    assert not s.step(1, 0.5).stop
    assert s.step(2, 0.4).stop and s.stopped


def test_fixed_schedule_drops_after_the_drop_epoch_and_stops_at_the_stop_epoch():
    s = FixedSchedule(1.0, (2, 4), 10.0, 5)
    decisions = [s.step(e) for e in range(1, 6)]
    assert [d.lr for d in decisions] == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01])
    assert [d.reduced for d in decisions] == [False, True, False, True, False]
    assert [d.reductions for d in decisions] == [0, 1, 1, 2, 2]
    assert [d.stop for d in decisions] == [False] * 4 + [True]
    assert [s.lr_after(e) for e in (1, 2, 3)] == pytest.approx([1.0, 0.1, 0.1])


def test_a_new_rate_on_resume_is_divided_by_the_later_drops_only():
    s = FixedSchedule(1.0, (2, 4), 10.0, 6)
    for e in (1, 2, 3):
        s.step(e)
    s.set_lr(0.5)  # one drop is behind: the initial rate that gives 0.5 now is 5
    assert s.lr == pytest.approx(5.0) and s.current_lr == 0.5
    assert s.step(4).lr == pytest.approx(0.05)


def test_apply_without_scales_uses_the_current_rate():
    """Any optimiser's groups: no ``lr_scale`` is 1, no ``follows_schedule`` follows."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    s = FixedSchedule(1.0, (1,), 10.0, 5)
    s.step(1)
    s.apply(opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_hand_events_on_one_layer_compose():
    """Two rate events on one layer multiply; a freeze wins; the events due are those up to the epoch."""
    p, q = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([dict(params=[p], layer="conv1", kind="weight", lr_scale=1.0),
                           dict(params=[q], layer="conv1", kind="bias", lr_scale=2.0)], lr=1.0)
    events = (HandEvent(2, "weight_lr", "conv1", 0.5), HandEvent(3, "weight_lr", "conv1", 0.5),
              HandEvent(5, "freeze", "conv1"), HandEvent(4, "colour_noise_off"))
    s = FixedSchedule(1.0, (), 10.0, 9, events=events)
    assert s.apply_events(1, opt) and [g["lr_scale"] for g in opt.param_groups] == [1.0, 2.0]
    assert s.apply_events(2, opt) and [g["lr_scale"] for g in opt.param_groups] == [0.5, 2.0]
    assert s.apply_events(3, opt) and [g["lr_scale"] for g in opt.param_groups] == [0.25, 2.0]
    assert not s.apply_events(4, opt)  # colour noise off from epoch 4
    assert not s.apply_events(5, opt) and [g["lr_scale"] for g in opt.param_groups] == [0.0, 0.0]
    assert [e.after_epoch for e in s.events] == [2, 3, 4, 5]  # sorted
    assert s.events_after(3) == (events[1],)


def test_fixed_state_carries_its_configuration_into_another_schedule():
    """A saved fixed schedule restores its own rate, drops, divisor and stop epoch, whatever the receiving
    schedule was built with."""
    s = FixedSchedule(1.0, (2, 4), 10.0, 6)
    for e in (1, 2, 3):
        s.step(e)
    state = json.loads(json.dumps(s.state_dict()))  # as saved in a checkpoint
    assert state["config"] == {"lr": 1.0, "drop_epochs": [2, 4], "divisor": 10.0, "stop_epoch": 6}
    t = FixedSchedule(3.0, (7,), 2.0, 9)
    t.load_state_dict(state)
    assert (t.lr, t.drop_epochs, t.divisor, t.stop_epoch) == (1.0, (2, 4), 10.0, 6)
    assert t.step(4).lr == pytest.approx(0.01)  # 1.0 / 10 / 10 by hand
    assert t.step(6).stop


def test_a_new_rate_after_two_drops_on_a_drop_epoch():
    """Resumed right after the second drop (epoch 4 is a drop epoch): both drops are behind, so the rate that
    gives 0.5 now started at 0.5 · 10² = 50; the third drop then divides 0.5 once."""
    s = FixedSchedule(1.0, (2, 4, 6), 10.0, 8)
    for e in (1, 2, 3, 4):
        s.step(e)
    s.set_lr(0.5)
    assert s.lr == pytest.approx(50.0) and s.current_lr == 0.5
    assert s.step(5).lr == pytest.approx(0.5)
    assert s.step(6).lr == pytest.approx(0.05)


def test_fixed_decisions_name_their_epoch_and_reason():
    s = FixedSchedule(1.0, (2,), 10.0, 3)
    d = s.step(1)
    assert (d.epoch, d.reduced, d.stop, d.reason) == (1, False, False, "") and s.stopped is False
    d = s.step(2)
    assert (d.epoch, d.reduced, d.stop, d.reason) == (2, True, False, "drop epoch") and s.stopped is False
    d = s.step(3)
    assert (d.epoch, d.stop, d.reason) == (3, True, "reached stop_epoch 3") and s.stopped is True


def test_a_new_stop_epoch_on_resume():
    """``--resume --set schedule.max_epochs=N``: both kinds then stop after epoch N."""
    f = FixedSchedule(1.0, (), 10.0, 10)
    f.set_max_epochs(2)
    assert f.stop_epoch == 2 and not f.step(1).stop and f.step(2).stop
    p = PlateauSchedule(patience=5, min_improvement=0.0, max_epochs=10)
    p.set_max_epochs(2)
    assert p.max_epochs == 2 and not p.step(1, 0.5).stop and p.step(2, 0.4).stop


def test_fixed_schedule_and_rate_errors_say_what_is_wrong():
    with pytest.raises(UserError,
                       match=r"^fixed schedule: drop_epochs must be increasing positive epochs, got \(3, 2\)$"):
        FixedSchedule(1.0, (3, 2), 10.0, 5)
    with pytest.raises(UserError, match=r"^fixed schedule: lr must be > 0, divisor > 1 and stop_epoch >= 1$"):
        FixedSchedule(1.0, (1,), 1.0, 5)
    with pytest.raises(UserError, match=r"^schedule: lr must be > 0, got 0$"):
        FixedSchedule(1.0, (1,), 10.0, 5).set_lr(0)


def test_hand_events_describe_themselves():
    """The words the training log writes for each kind of hand event."""
    assert HandEvent(67, "weight_lr", "conv1", 0.1).describe() == "after epoch 67: conv1 weights' rate x 0.1"
    assert HandEvent(72, "freeze", "conv1").describe() == "after epoch 72: conv1 frozen"
    assert HandEvent(67, "colour_noise_off").describe() == "after epoch 67: colour noise off"


def test_a_state_of_another_kind_is_named_and_stopped_is_restored():
    fixed = FixedSchedule(1.0, (2,), 10.0, 2)
    fixed.step(1)
    fixed.step(2)
    with pytest.raises(UserError, match=r"^schedule: the saved state is of kind 'fixed', not 'plateau'$"):
        PlateauSchedule(patience=1, min_improvement=0.0).load_state_dict(fixed.state_dict())
    resumed = FixedSchedule(1.0, (2,), 10.0, 2)
    resumed.load_state_dict(json.loads(json.dumps(fixed.state_dict())))
    assert resumed.stopped is True


def test_plateau_decisions_by_hand_at_the_edges():
    """An improvement of exactly min_improvement counts (0.25 is exact in binary) and reduces nothing; a non-finite error is named; a stopped schedule says so for the epoch asked."""
    s = PlateauSchedule(patience=1, min_improvement=0.25, max_epochs=3)
    d = s.step(1, 1.0)
    assert (d.epoch, d.reduced, d.stop, d.reason) == (1, False, False, "improved")
    d = s.step(2, 0.75)
    assert (d.epoch, d.reduced, d.stop, d.reason, d.bad_epochs) == (2, False, False, "improved", 0)
    with pytest.raises(UserError, match=r"^plateau schedule: validation error must be a finite number, got nan$"):
        s.step(3, float("nan"))
    assert s.step(3, 0.7).stop
    d = s.step(4, 0.7)
    assert (d.epoch, d.reduced, d.stop, d.reason) == (4, False, True, "already stopped")


def test_plateau_reasons_name_the_bad_epochs_and_the_reductions():
    """patience 2, max 1 reduction: 0.5 improves; two epochs at 0.5 are bad (the second reduces: 1 of 1);
    two more bad epochs stop the schedule after its 1 reduction."""
    s = PlateauSchedule(patience=2, min_improvement=0.0, max_reductions=1, max_epochs=10)
    reasons = [s.step(epoch, 0.5).reason for epoch in range(1, 6)]
    assert reasons == ["improved", "no improvement for 1 epoch(s)", "plateau: reduction 1 of 1",
                       "no improvement for 1 epoch(s)", "plateau after 1 reductions"]


def test_a_repeated_epoch_is_named_in_the_error():
    s = PlateauSchedule(patience=1, min_improvement=0.0)
    s.step(3, 0.5)
    with pytest.raises(UserError) as err:
        s.step(2, 0.4)
    assert str(err.value) == ("schedule: epoch 2 is not after the last epoch seen (3); "
                              "epochs count completed epochs and must increase")


def test_a_fresh_plateau_schedule_starts_at_its_rate_unstopped_with_no_bad_epochs():
    """By hand: before any step the rate is the lr given, nothing is stopped, no epoch is bad, the reference is inf;
    the saved state carries each configuration key by name with the values passed in."""
    s = PlateauSchedule(0.02, 4.0, 2, patience=3, min_improvement=0.005, max_epochs=7)
    assert s.current_lr == 0.02 and s.stopped is False and s.bad_epochs == 0 and s.reductions == 0
    state = s.state_dict()
    assert state["stopped"] is False and state["bad_epochs"] == 0 and state["lr"] == 0.02
    assert state["config"] == {"lr": 0.02, "divisor": 4.0, "max_reductions": 2, "patience": 3,
                               "min_improvement": 0.005, "max_epochs": 7}
    assert FixedSchedule(0.01, (2,), 10.0, 5).stopped is False


def test_plateau_errors_say_what_is_wrong():
    """The messages, written by hand from the settings the §5 plateau rule needs."""
    cases = [
        (dict(patience=0, min_improvement=0.0), "plateau schedule: patience must be at least 1 epoch, got 0"),
        (dict(patience=1, min_improvement=-0.5), "plateau schedule: min_improvement must be >= 0, got -0.5"),
        (dict(patience=1, min_improvement=0.0, divisor=1.0), "plateau schedule: divisor must be > 1, got 1.0"),
        (dict(patience=1, min_improvement=0.0, lr=0.0),
         "plateau schedule: lr must be > 0, max_epochs >= 1 and max_reductions >= 0"),
    ]
    for options, message in cases:
        with pytest.raises(UserError) as err:
            PlateauSchedule(**options)
        assert str(err.value) == message


def test_hand_event_errors_name_the_event_and_the_groups_needed():
    """By hand: the event's dataclass repr and the allowed actions; the missing layer's groups."""
    with pytest.raises(UserError) as err:
        FixedSchedule(events=(HandEvent(0, "freeze", "conv1"),))
    assert str(err.value) == ("schedule: bad hand event HandEvent(after_epoch=0, action='freeze', layer='conv1', "
                              "factor=1.0); actions: weight_lr, freeze, colour_noise_off")
    s = FixedSchedule(0.01, (9,), 10.0, 20, events=(HandEvent(2, "weight_lr", "conv1", 0.5),))
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "layer": "conv2", "kind": "weight"}], lr=0.1)
    with pytest.raises(UserError) as err:
        s.apply_events(2, opt)
    assert str(err.value) == ("schedule: the hand event 'after epoch 2: conv1 weights' rate x 0.5' needs conv1's own "
                              "parameter groups (param_groups(..., per_layer=True))")


def test_hand_events_keep_the_base_scale_of_groups_with_and_without_lr_scale():
    """By hand: a group without ``lr_scale`` counts as scale 1.0; conv1's weights halved -> 0.5, a weight group
    with scale 2 halved -> 1.0, conv1's bias untouched; each group's scale before any event is kept in
    ``base_lr_scale``, and applying the events again changes nothing."""
    s = FixedSchedule(0.01, (9,), 10.0, 20, events=(HandEvent(2, "weight_lr", "conv1", 0.5),))

    def p() -> torch.Tensor:
        return torch.zeros(1, requires_grad=True)

    opt = torch.optim.SGD([
        {"params": [p()], "layer": "conv1", "kind": "weight"},
        {"params": [p()], "layer": "conv1", "kind": "bias"},
        {"params": [p()], "layer": "conv1", "kind": "weight", "lr_scale": 2.0},
        {"params": [p()], "layer": "conv2", "kind": "weight"},
    ], lr=0.1)
    for _ in range(2):
        assert s.apply_events(2, opt)
        assert [g["base_lr_scale"] for g in opt.param_groups] == [1.0, 1.0, 2.0, 1.0]
        assert [g["lr_scale"] for g in opt.param_groups] == [0.5, 1.0, 1.0, 1.0]
    s.apply(opt)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.01, 0.01, 0.01])


def test_make_schedule_passes_each_plateau_option_and_names_bad_options():
    """The options given by hand come back in the saved configuration; an unknown option is named."""
    s = make_schedule("plateau", lr=0.03, divisor=5.0, max_reductions=1, patience=4, min_improvement=0.002,
                      max_epochs=9)
    assert isinstance(s, PlateauSchedule)
    assert s.state_dict()["config"] == {"lr": 0.03, "divisor": 5.0, "max_reductions": 1, "patience": 4,
                                        "min_improvement": 0.002, "max_epochs": 9}
    with pytest.raises(UserError) as err:
        make_schedule("plateau", patience=1, min_improvement=0.0, bogus=1)
    message = str(err.value)
    assert message.startswith("schedule 'plateau': bad options ['bogus', 'min_improvement', 'patience']: ")
    assert message.endswith("unexpected keyword argument 'bogus'")


def test_schedule_from_config_builds_fixed_and_code2012():
    """By hand from the config: ``fixed`` takes lr, drop_epochs, divisor and max_epochs as its stop epoch;
    ``code2012`` takes only lr, the rest from paper.CODE2012 (drops 25, 51, 79, stop 91, its hand events)."""
    from alexnet.config import Config
    from alexnet.training.schedule import CODE2012_EVENTS, schedule_from_config

    config = Config()
    config.optim.lr = 0.02
    config.schedule.kind = "fixed"
    config.schedule.drop_epochs = [2, 4]
    config.schedule.divisor = 4.0
    config.schedule.max_epochs = 5
    s = schedule_from_config(config)
    assert isinstance(s, FixedSchedule)
    assert s.state_dict()["config"] == {"lr": 0.02, "drop_epochs": [2, 4], "divisor": 4.0, "stop_epoch": 5}
    assert s.events == ()
    config.schedule.kind = "code2012"
    config.optim.lr = 0.03
    s = schedule_from_config(config)
    assert isinstance(s, FixedSchedule)
    assert s.state_dict()["config"] == {"lr": 0.03, "drop_epochs": [25, 51, 79], "divisor": 10.0, "stop_epoch": 91}
    assert s.events == CODE2012_EVENTS


def test_schedule_from_config_passes_every_plateau_option():
    """Each §5 plateau option read from the config, none left at its default (all set off the defaults)."""
    from alexnet.config import Config
    from alexnet.training.schedule import schedule_from_config

    config = Config()
    config.optim.lr = 0.07
    config.schedule.kind = "plateau"
    config.schedule.divisor = 3.0
    config.schedule.max_reductions = 2
    config.schedule.patience = 5
    config.schedule.min_improvement = 0.125
    config.schedule.max_epochs = 17
    s = schedule_from_config(config)
    assert isinstance(s, PlateauSchedule)
    assert s.state_dict()["config"] == {"lr": 0.07, "divisor": 3.0, "max_reductions": 2, "patience": 5,
                                        "min_improvement": 0.125, "max_epochs": 17}
