"""§5 update rule: PaperSGD against a hand-written transcription, and against torch.optim.SGD."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.training.optim import PaperSGD, freeze, param_groups
from alexnet.paper import LEARNING

MU, WD, LR = LEARNING.momentum, LEARNING.weight_decay, LEARNING.lr


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double()


def grads_for(step: int, params) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


# learning rate per step: constant, then a drop by the paper's divisor after step 3
LRS = [LR] * 4 + [LR / LEARNING.lr_divisor] * 3


def run(opt_factory, lrs=LRS):
    model = tiny()
    params = list(model.parameters())
    opt = opt_factory(params)
    history = []
    for i, lr in enumerate(lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        for p, g in zip(params, grads_for(i, params)):
            p.grad = g
        opt.step()
        history.append([p.detach().clone() for p in params])
    return history


def by_hand(lrs=LRS):
    """v <- mu v - lambda eps w - eps g;  w <- w + v (§5), written out."""
    ws = [p.detach().clone() for p in tiny().parameters()]
    vs = [torch.zeros_like(w) for w in ws]
    history = []
    for i, eps in enumerate(lrs):
        gs = grads_for(i, ws)
        for k in range(len(ws)):
            vs[k] = MU * vs[k] - WD * eps * ws[k] - eps * gs[k]
            ws[k] = ws[k] + vs[k]
        history.append([w.clone() for w in ws])
    return history


@pytest.mark.parametrize("foreach", [True, False])
def test_matches_the_printed_rule_across_a_drop(foreach):
    ours = run(lambda ps: PaperSGD(ps, lr=LR, momentum=MU, weight_decay=WD, foreach=foreach))
    ref = by_hand()
    for step, (a, b) in enumerate(zip(ours, ref)):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-15, msg=f"step {step}")


def test_torch_sgd_agrees_before_the_drop_and_differs_after():
    ours = run(lambda ps: PaperSGD(ps, lr=LR, momentum=MU, weight_decay=WD))
    sgd = run(lambda ps: torch.optim.SGD(ps, lr=LR, momentum=MU, weight_decay=WD))
    first_drop = LRS.index(LRS[-1])
    for step in range(first_drop):
        for x, y in zip(ours[step], sgd[step]):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-13)
    diff = max((x - y).abs().max().item() for x, y in zip(ours[first_drop], sgd[first_drop]))
    assert diff > 1e-5  # right after the drop the velocities differ by the old/new eps ratio


def test_state_dict_round_trip_resumes_exactly():
    model = tiny()
    params = list(model.parameters())
    opt = PaperSGD(params, lr=LR)
    for i in range(3):
        for p, g in zip(params, grads_for(i, params)):
            p.grad = g
        opt.step()
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    assert all("velocity" in s for s in saved_opt["state"].values())

    def continue_from(m_state, o_state):
        m = tiny()
        m.load_state_dict(m_state)
        ps = list(m.parameters())
        o = PaperSGD(ps, lr=LR)
        o.load_state_dict(o_state)
        for i in range(3, 6):
            for p, g in zip(ps, grads_for(i, ps)):
                p.grad = g
            o.step()
        return [p.detach() for p in ps]

    a = continue_from(saved_model, saved_opt)
    for i in range(3, 6):
        for p, g in zip(params, grads_for(i, params)):
            p.grad = g
        opt.step()
    for x, y in zip(a, params):
        assert torch.equal(x, y.detach())


def test_param_groups_paper_and_code2012():
    model = tiny()
    (g,) = param_groups(model, "paper", LR, WD, MU)
    assert len(g["params"]) == 4 and g["lr"] == LR and g["weight_decay"] == WD and g["lr_scale"] == 1
    groups = {g["name"]: g for g in param_groups(model, "code2012", 0.01, 0.0005, 0.9)}
    assert list(groups) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # an epsW and an epsB per layer
    for name, g in groups.items():
        bias = name.endswith("bias")
        assert len(g["params"]) == 1 and g["layer"] == name[0] and g["kind"] == ("bias" if bias else "weight")
        # layer-params-145.cfg: epsW 0.01, epsB 0.02, wc 0.0005, wball 0
        assert (g["lr"], g["weight_decay"], g["momentum"]) == ((0.02, 0.0, 0.9) if bias else (0.01, 0.0005, 0.9))
        assert g["follows_schedule"] is not bias
    opt = PaperSGD(param_groups(model, "code2012", LR, WD, MU))
    assert [g["lr_scale"] for g in opt.state_dict()["param_groups"]] == [1.0, 2.0, 1.0, 2.0]
    per_layer = param_groups(model, "paper", LR, WD, MU, per_layer=True)
    assert [(g["name"], g["lr"], g["weight_decay"], g["follows_schedule"]) for g in per_layer] == [
        ("0.weight", LR, WD, True), ("0.bias", LR, WD, True), ("2.weight", LR, WD, True), ("2.bias", LR, WD, True)]
    with pytest.raises(UserError):
        param_groups(model, "caffe", LR, WD, MU)


def test_bias_group_gets_no_decay_and_double_rate():
    model = tiny()
    bias = model[0].bias
    before = bias.detach().clone()
    opt = PaperSGD(param_groups(model, "code2012", 0.01, 0.0005, 0.9))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    torch.testing.assert_close(bias.detach(), before - 0.02)  # epsB 0.02, wball 0


def test_code2012_biases_keep_their_rate_through_the_drops():
    """layer-params-145.cfg after the run: every epsW 0.00001, every epsB still 0.02 (the log only set epsw)."""
    from alexnet.training.schedule import FixedSchedule

    model = tiny()
    opt = PaperSGD(param_groups(model, "code2012", 0.01, 0.0005, 0.9))
    schedule = FixedSchedule.code2012(0.01)
    for epoch in range(1, 81):
        schedule.step(epoch, 0.5)
    schedule.apply(opt)
    rates = {g["name"]: g["lr"] for g in opt.param_groups}
    assert rates["0.weight"] == pytest.approx(0.00001) and rates["2.weight"] == pytest.approx(0.00001)
    assert rates["0.bias"] == rates["2.bias"] == 0.02
    paper = PaperSGD(param_groups(model, "paper", 0.01, 0.0005, 0.9, per_layer=True))
    schedule.apply(paper)
    assert all(g["lr"] == pytest.approx(0.00001) for g in paper.param_groups)  # §5: one rate for all


def test_a_group_at_rate_zero_is_left_as_it_is():
    """cuda-convnet's weights.cu updates only when the rate is > 0: a frozen layer keeps weights and velocity."""
    model = tiny()
    opt = PaperSGD(param_groups(model, "code2012", LR, WD, MU))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()  # a velocity that would otherwise keep moving the weights
    opt.param_groups[0]["lr"] = 0.0  # 0.weight
    before = model[0].weight.detach().clone()
    velocity = opt.state[model[0].weight]["velocity"].clone()
    other = model[2].weight.detach().clone()
    opt.step()
    assert torch.equal(model[0].weight.detach(), before)
    assert torch.equal(opt.state[model[0].weight]["velocity"], velocity)
    assert not torch.equal(model[2].weight.detach(), other)


def test_freeze_leaves_layer_untouched():
    model = tiny()
    frozen = freeze(model, ["0"])
    assert frozen == ["0.weight", "0.bias"]
    before = model[0].weight.detach().clone()
    other = model[2].weight.detach().clone()
    opt = PaperSGD(model.parameters(), lr=LR)
    for p in model.parameters():
        p.grad = torch.ones_like(p)  # even a stale gradient is ignored
    opt.step()
    assert torch.equal(model[0].weight.detach(), before)
    assert not torch.equal(model[2].weight.detach(), other)  # the rest still trains
    assert all(p not in opt.state for p in model[0].parameters())
    with pytest.raises(UserError):
        freeze(model, ["conv9"])


def test_bad_hyperparameters():
    with pytest.raises(UserError):
        PaperSGD(tiny().parameters(), lr=-1.0)
    with pytest.raises(UserError):
        PaperSGD(tiny().parameters(), momentum=1.0)


def test_the_edges_of_the_allowed_hyperparameters():
    """Rate 0 (cuda-convnet's frozen layer), momentum 0 (plain SGD) and weight decay 0 (the 2012 biases) are
    allowed; momentum 1 or more and negative decay are not.  With mu = 0 and lambda = 0 one step is w - eps g."""
    model = tiny()
    PaperSGD(model.parameters(), lr=0.0)
    with pytest.raises(UserError):
        PaperSGD(model.parameters(), momentum=1.5)
    with pytest.raises(UserError):
        PaperSGD(model.parameters(), momentum=-0.1)
    with pytest.raises(UserError):
        PaperSGD(model.parameters(), weight_decay=-1e-4)
    w = model[0].weight
    before = w.detach().clone()
    opt = PaperSGD(model.parameters(), lr=0.5, momentum=0.0, weight_decay=0.0)
    for p in model.parameters():
        p.grad = torch.full_like(p, 2.0)
    opt.step()
    assert torch.equal(w.detach(), before - 1.0)  # 0.5 * 2, nothing else


def test_plain_parameters_take_the_schedules_rate_unscaled():
    from alexnet.training.schedule import FixedSchedule

    opt = PaperSGD(tiny().parameters(), lr=0.01)
    schedule = FixedSchedule(0.01, drop_epochs=(1,), divisor=10.0, stop_epoch=5)
    schedule.step(1, 0.5)
    schedule.apply(opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)


@pytest.mark.parametrize("foreach", [None, True, False])
def test_foreach_chooses_the_multi_tensor_kernels(foreach, monkeypatch):
    """``foreach=None`` uses torch's multi-tensor kernels where torch has them (it does), False never."""
    from alexnet.training import optim

    calls = []
    real = optim._foreach_update
    monkeypatch.setattr(optim, "_foreach_update", lambda *a: (calls.append(1), real(*a)))
    model = tiny()
    opt = PaperSGD(model.parameters(), foreach=foreach)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    assert bool(calls) is (foreach is not False)


def test_nested_layers_are_named_by_everything_before_the_last_dot():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2)), nn.Linear(2, 1)).double()
    groups = {g["name"]: g for g in param_groups(model, "code2012", LR, WD, MU)}
    assert list(groups) == ["0.0.weight", "0.0.bias", "1.weight", "1.bias"]
    assert (groups["0.0.bias"]["kind"], groups["0.0.bias"]["weight_decay"], groups["0.0.bias"]["layer"]) == (
        "bias", 0.0, "0.0")


def test_any_bias_rule_of_a_reading_gives_per_layer_groups():
    """One uniform group only when biases decay, learn at the weights' rate and follow the schedule."""
    from dataclasses import replace

    from alexnet.paper import reading

    model = tiny()
    decay_free = replace(reading("code2012"), bias_lr_multiplier=1.0, bias_lr_follows_schedule=True)
    groups = {g["name"]: g for g in param_groups(model, decay_free, LR, WD, MU)}
    assert groups["0.bias"]["weight_decay"] == 0.0 and groups["0.weight"]["weight_decay"] == WD
    doubled = replace(reading("paper"), bias_lr_multiplier=2.0)
    groups = {g["name"]: g for g in param_groups(model, doubled, LR, WD, MU)}
    assert groups["0.bias"]["lr"] == 2 * LR and groups["0.weight"]["lr"] == LR


def test_freezing_needs_a_layer_name_not_the_whole_model():
    with pytest.raises(UserError):
        freeze(tiny(), [""])


def test_errors_name_the_problem_and_the_layers():
    model = tiny()
    with pytest.raises(UserError, match="top-level layers: 0, 1, 2$"):
        freeze(model, ["conv9"])
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(UserError, match="^the model has no trainable parameters$"):
        param_groups(model, "paper", LR, WD, MU)


def test_every_group_carries_the_given_momentum_and_decay():
    model = tiny()
    for reading in ("paper", "code2012"):
        for g in param_groups(model, reading, LR, 0.001, 0.5):
            assert g["momentum"] == 0.5 and g["weight_decay"] in (0.001, 0.0)


def test_the_uniform_group_carries_the_documented_keys():
    (g,) = param_groups(tiny(), "paper", LR, WD, MU)
    assert (g["name"], g["layer"], g["kind"], g["lr_scale"], g["follows_schedule"]) == ("all", "", "all", 1.0, True)


def test_bad_hyperparameters_are_named():
    for options, message in [(dict(lr=-1.0), "learning rate must be non-negative, got -1.0"),
                             (dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
                             (dict(weight_decay=-1.0), "weight decay must be non-negative, got -1.0")]:
        with pytest.raises(UserError, match=message):
            PaperSGD(tiny().parameters(), **options)
