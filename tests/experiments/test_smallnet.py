"""The four-layer network of §3.1/§3.3 and its training loop (``alexnet.experiments.smallnet``), pinned by hand.

The expected values here come from a direct transcription (the SGD update written out, the layer list read
off layers-18pct), from counting, or from inputs built so that the answer is known; never from the
functions under test.  Images are 16×16 (three 3/2 poolings: 16 -> 7 -> 3 -> 1) to keep every test fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.experiments import smallnet
from alexnet.experiments.smallnet import (FourLayerNet, SmallRun, _batch, error_rate, normalise, train_small)
from alexnet.net.lrn import LocalResponseNorm

SIZE = 16


def _data(n: int = 8, classes: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, SIZE, SIZE, generator=g), torch.arange(n) % classes


class TinyNet(nn.Module):
    """FourLayerNet's signature with one linear layer: for tests of the loop that need hundreds of cheap steps."""

    def __init__(self, activation: str = "relu", lrn: bool = False, num_classes: int = 10, input_size: int = 32,
                 init: str = "default") -> None:
        super().__init__()
        self.fc = nn.Linear(3 * input_size * input_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.fixture
def tiny(monkeypatch) -> type[TinyNet]:
    monkeypatch.setattr(smallnet, "FourLayerNet", TinyNet)
    return TinyNet


def _interrupted_at(stop: int):
    """``smallnet._batch`` that raises KeyboardInterrupt (a killed run) when asked for step ``stop``."""
    real = smallnet._batch

    def batch(xs, ys, step, c):
        if step == stop:
            raise KeyboardInterrupt
        return real(xs, ys, step, c)

    return batch


def _killed_at(monkeypatch, run: Path, cfg: SmallRun, data, stop: int) -> None:
    """Train ``run`` until step ``stop`` is asked for, killed there, and put the real batches back."""
    real = smallnet._batch
    monkeypatch.setattr(smallnet, "_batch", _interrupted_at(stop))
    with pytest.raises(KeyboardInterrupt):
        train_small(run, cfg, data)
    monkeypatch.setattr(smallnet, "_batch", real)


def _known_errors(monkeypatch, tiny, pattern: list[float], n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """A frozen network's batches with labels chosen per step so that step i's error is pattern[i % len]."""
    x = torch.randn(n, 3, SIZE, SIZE)
    torch.manual_seed(0)
    predicted = tiny("relu", False, 2, SIZE)(x).argmax(1).detach()

    def batch(xs, ys, step, c):
        wrong = torch.arange(n) < int(pattern[step % len(pattern)] * n)
        return x, torch.where(wrong, 1 - predicted, predicted)

    monkeypatch.setattr(smallnet, "_batch", batch)
    return x, torch.arange(n) % 2


def _cfg(**kw) -> SmallRun:
    base = dict(lr=0.01, steps=4, batch_size=4, window=2, checkpoint_every=0, give_up_after=0, threads=0)
    base.update(kw)
    return SmallRun(**base)


# --------------------------------------------------------------------------- the network


def test_the_layers_are_layers_18pct_with_lrn_after_the_first_two_poolings() -> None:
    """conv 32, 32, 64 of 5×5 with padding 2; 3/2 max-pooling; LRN (§3.3's k, n, alpha, beta) after pools 1 and 2
    only; fc from 64·1·1 on 16-px inputs (16 -> 7 -> 3 -> 1) to the number of classes."""
    net = FourLayerNet("tanh", lrn=True, num_classes=3, input_size=SIZE)
    names = [n for n, _ in net.named_children()]
    assert names == ["conv1", "act1", "pool1", "lrn1", "conv2", "act2", "pool2", "lrn2", "conv3", "act3", "pool3",
                     "flatten", "fc"]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.padding) for m in (net.conv1, net.conv2, net.conv3)] == [
        (3, 32, (5, 5), (2, 2)), (32, 32, (5, 5), (2, 2)), (32, 64, (5, 5), (2, 2))]
    assert all(isinstance(getattr(net, f"act{i}"), nn.Tanh) for i in (1, 2, 3))
    assert (net.pool1.kernel_size, net.pool1.stride) == (3, 2)
    lrn = net.lrn1
    assert isinstance(lrn, LocalResponseNorm) and (lrn.n, lrn.k, lrn.alpha, lrn.beta) == (5, 2.0, 1e-4, 0.75)
    assert (net.fc.in_features, net.fc.out_features) == (64, 3)
    assert net(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, 3)
    plain = FourLayerNet()  # the defaults: ReLU, no LRN, 10 classes, 32-px CIFAR-10 images
    assert not any(isinstance(m, LocalResponseNorm) for m in plain.modules())
    assert isinstance(plain.act1, nn.ReLU) and plain.fc.in_features == 64 * 3 * 3  # 32 -> 15 -> 7 -> 3
    assert plain.fc.out_features == 10


def test_cuda_convnet_init_draws_the_layers_18pct_stds_with_zero_biases() -> None:
    torch.manual_seed(0)
    net = FourLayerNet("relu", num_classes=10, input_size=32, init="cuda-convnet")
    for layer, std in ((net.conv1, 1e-4), (net.conv2, 1e-2), (net.conv3, 1e-2), (net.fc, 1e-1)):
        assert float(layer.weight.detach().std()) == pytest.approx(std, rel=0.15)
        assert abs(float(layer.weight.detach().mean())) < 0.2 * std
        assert torch.all(layer.bias == 0)
    torch.manual_seed(0)
    default = FourLayerNet("relu", num_classes=10, input_size=32)
    assert float(default.conv1.weight.detach().abs().max()) <= 1 / math.sqrt(3 * 25) + 1e-7  # PyTorch's fan-in bound
    assert torch.any(default.conv1.bias != 0)
    with pytest.raises(ValueError, match=r"^init: unknown value 'he'; allowed: default, cuda-convnet$"):
        FourLayerNet(init="he")


# --------------------------------------------------------------------------- inputs and batches


def test_normalise_subtracts_the_mean_image_divides_by_std_and_puts_channels_first() -> None:
    images = np.array([[[[10, 20, 30], [40, 50, 60]]]], dtype=np.uint8)  # (1, 1, 2, 3): one 1×2 image
    mean = np.array([[[2, 4, 6], [8, 10, 12]]], dtype=np.float32)
    x = normalise(images, mean, 2.0)
    assert x.shape == (1, 3, 1, 2) and x.dtype == torch.float32
    assert x[0, :, 0, 0].tolist() == [4.0, 8.0, 12.0] and x[0, :, 0, 1].tolist() == [16.0, 20.0, 24.0]


def test_batches_cover_each_epoch_once_and_reshuffle_between_epochs() -> None:
    """10 images, batches of 4: 2 batches an epoch (the last 2 images of each shuffled epoch left out), disjoint
    within an epoch, a new order in the next epoch, the same order for the same seed."""
    x = torch.arange(10, dtype=torch.float32)[:, None, None, None].expand(10, 3, 2, 2).contiguous()
    y = torch.arange(10)
    cfg = SmallRun(batch_size=4, seed=5)
    ids = [_batch(x, y, s, cfg)[1].tolist() for s in range(4)]
    assert all(len(b) == 4 for b in ids)
    assert len(set(ids[0]) | set(ids[1])) == 8 and len(set(ids[2]) | set(ids[3])) == 8
    assert ids[:2] != ids[2:]
    for s in range(4):
        xb, yb = _batch(x, y, s, cfg)
        assert torch.equal(xb[:, 0, 0, 0], yb.float())  # images travel with their labels
        assert _batch(x, y, s, SmallRun(batch_size=4, seed=5))[1].tolist() == ids[s]
    assert [_batch(x, y, s, SmallRun(batch_size=4, seed=6))[1].tolist() for s in range(2)] != ids[:2]


def test_augmented_batches_are_flips_and_shifts_of_at_most_two_pixels() -> None:
    """Each image of an augmented batch is its source, mirrored or not, shifted by dx, dy in -2..2 (one shift
    per batch) with zeros coming in; over a few steps both mirrored and plain images, and shifts, occur."""
    n, s = 8, 6
    x = torch.arange(n * 3 * s * s, dtype=torch.float32).reshape(n, 3, s, s) + 1  # no zeros inside
    y = torch.arange(n)
    flips, shifts = set(), set()
    for step in range(6):
        cfg = SmallRun(batch_size=4, seed=1, augment=True)
        plain, _ = _batch(x, y, step, SmallRun(batch_size=4, seed=1))
        xb, yb = _batch(x, y, step, cfg)
        assert torch.equal(yb, _batch(x, y, step, SmallRun(batch_size=4, seed=1))[1])
        found = None
        for dy in range(5):
            for dx in range(5):
                ok = True
                for i in range(4):
                    padded = [nn.functional.pad(v, (2, 2, 2, 2))[:, dy:dy + s, dx:dx + s]
                              for v in (plain[i], plain[i].flip(2))]
                    match = [torch.equal(xb[i], p) for p in padded]
                    if not any(match):
                        ok = False
                        break
                    flips.add(match[1] and not match[0])
                if ok:
                    found = (dx - 2, dy - 2)
        assert found is not None, step
        shifts.add(found)
    assert flips == {True, False} and len(shifts) > 1


def test_error_rate_counts_wrong_argmaxes_over_all_batches_and_restores_training_mode() -> None:
    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # class = the first input value
            return nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()

    x = torch.tensor([0, 1, 2, 0, 1], dtype=torch.float32)[:, None, None, None].expand(5, 3, 1, 1)
    y = torch.tensor([0, 1, 0, 0, 2])  # two wrong
    model = Fixed().train()
    assert error_rate(model, x, y, batch=2) == pytest.approx(2 / 5)
    assert model.training
    assert error_rate(model, x[:0], y[:0]) == 0.0


# --------------------------------------------------------------------------- training


def _sgd_by_hand(cfg: SmallRun, x: torch.Tensor, y: torch.Tensor, classes: int) -> dict[str, torch.Tensor]:
    """The loop transcribed: v = m·v + (g + wd·w); w -= lr·v, with lr / 10 from step lr_drop_at·steps on."""
    torch.manual_seed(cfg.seed)
    model = FourLayerNet(cfg.activation, cfg.lrn, classes, x.shape[2], cfg.init)
    bufs = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for step in range(cfg.steps):
        lr = cfg.lr / 10 if cfg.lr_drop_at and step >= cfg.lr_drop_at * cfg.steps else cfg.lr
        xb, yb = _batch(x, y, step, cfg)
        model.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        with torch.no_grad():
            for n, p in model.named_parameters():
                d = p.grad + cfg.weight_decay * p
                bufs[n] = d if step == 0 else cfg.momentum * bufs[n] + d
                p -= lr * bufs[n]
    return model.state_dict()


def test_training_is_sgd_with_momentum_weight_decay_and_the_late_rate_drop(tmp_path: Path) -> None:
    x, y = _data(8, classes=3)
    cfg = _cfg(lr=0.05, steps=4, weight_decay=0.01, lr_drop_at=0.5, momentum=0.8)
    result = train_small(tmp_path / "run", cfg, (x, y))
    got = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    want = _sgd_by_hand(cfg, x, y, 3)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)
    assert got["fc.weight"].shape == (3, 64)  # classes = largest label + 1, input size from the images
    no_drop = _sgd_by_hand(_cfg(lr=0.05, steps=4, weight_decay=0.01, momentum=0.8), x, y, 3)
    assert not torch.allclose(no_drop["fc.weight"], want["fc.weight"])
    assert result["steps"] == 4 and result["steps_per_epoch"] == 2 and result["epochs"] == 2.0
    assert result["train_images"] == 8 and result["config"]["lr"] == 0.05 and result["config"]["lr_drop_at"] == 0.5
    assert result["diverged"] is False and result["stuck_at_chance"] is False and result["reached_step"] is None
    assert result["reached_epoch"] is None
    assert result["seconds_per_step"] == pytest.approx(result["wall_seconds"] / 4, rel=0.2, abs=0.05)
    assert not (tmp_path / "run" / "last.pt").exists()
    assert json.loads((tmp_path / "run" / "result.json").read_text()) == result


def test_trailing_errors_are_means_over_the_window_and_thinned_to_400_points(tmp_path: Path, monkeypatch,
                                                                            tiny) -> None:
    """With a frozen network (rate 0) and labels chosen per step, every step's error is known: the trailing
    error at step i is the mean of the last ``window`` of them; 800 steps keep every 2nd value (800 // 400)."""
    pattern = [1.0, 0.5, 0.0, 0.25]  # share of wrong labels per step, cycling
    data = _known_errors(monkeypatch, tiny, pattern)
    r = train_small(tmp_path / "run", _cfg(lr=0.0, steps=800, window=3), data)
    errors = [pattern[i % 4] for i in range(800)]
    trailing = [float(np.mean(errors[max(0, i - 2):i + 1])) for i in range(800)]
    assert r["trailing_every"] == 2 and len(r["trailing_train_error"]) == 400
    assert r["trailing_train_error"] == pytest.approx(trailing[::2])
    assert r["final_trailing_train_error"] == pytest.approx(np.mean(errors[-3:]))


def test_a_finished_run_is_read_back_not_trained_again(tmp_path: Path, tiny) -> None:
    """A result made with this configuration (threads and checkpoint spacing aside, which change nothing it
    computes) is read back; one made with another rate, seed or data is refused, naming the file and the field."""
    from dataclasses import asdict

    from alexnet.errors import UserError

    run = tmp_path / "run"
    run.mkdir()
    made = {**asdict(_cfg()), "threads": 7, "checkpoint_every": 3}
    (run / "result.json").write_text(json.dumps({"config": made, "steps": 123, "marker": "kept", "train_images": 8}))
    assert train_small(run, _cfg(), _data())["marker"] == "kept"
    assert not (run / "model.pt").exists()
    with pytest.raises(UserError, match=r"run/result.json: finished with lr=.*, this run asks for lr=0.125"):
        train_small(run, _cfg(lr=0.125), _data())
    with pytest.raises(UserError, match=r"finished with seed=0, this run asks for seed=3"):
        train_small(run, _cfg(seed=3), _data())
    with pytest.raises(UserError, match=r"run/result.json: finished on 8 training images, this run has 12"):
        train_small(run, _cfg(), _data(12))
    del made["stats_every"]  # a field newer than the result: it was made with the default
    (run / "result.json").write_text(json.dumps({"config": made, "marker": "old", "train_images": 8}))
    assert train_small(run, _cfg(), _data())["marker"] == "old"
    with pytest.raises(UserError, match=r"finished with stats_every=0, this run asks for stats_every=5"):
        train_small(run, _cfg(stats_every=5), _data())
    (run / "result.json").write_text("{\"steps\": 1}")
    with pytest.raises(UserError, match=r"run/result.json: not a finished small-network result"):
        train_small(run, _cfg(), _data())


def test_threads_are_set_only_when_asked(tmp_path: Path, monkeypatch, tiny) -> None:
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    train_small(tmp_path / "a", _cfg(steps=1), _data())
    assert calls == []
    train_small(tmp_path / "b", _cfg(steps=1, threads=1), _data())
    assert calls == [1]


def test_fewer_images_than_a_batch_is_an_error_but_exactly_one_batch_trains(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^2 training images, fewer than one batch of 4$"):
        train_small(tmp_path / "a", _cfg(), _data(2))
    r = train_small(tmp_path / "b", _cfg(steps=2), _data(4))
    assert r["steps"] == 2 and r["steps_per_epoch"] == 1 and r["epochs"] == 2.0


def test_a_diverging_run_stops_at_the_first_non_finite_loss(tmp_path: Path, tiny) -> None:
    x, y = _data(8, classes=2)
    x = x * 1e4
    r = train_small(tmp_path / "run", _cfg(lr=1e30, steps=50, momentum=0.0), (x, y), test=(x, y))
    assert r["diverged"] is True and r["steps"] < 50
    assert "test_error" not in r and r["final_trailing_train_error"] is not None


def test_a_run_at_chance_gives_up_after_the_set_steps_and_not_before(tmp_path: Path, tiny) -> None:
    """All-zero images and rate 0: the loss never moves from its first value; the run gives up at step
    ``give_up_after`` exactly when that loss is within 2% of ln C."""
    x, y = torch.zeros(8, 3, SIZE, SIZE), torch.arange(8) % 2
    torch.manual_seed(0)
    first = float(nn.functional.cross_entropy(tiny("relu", False, 2, SIZE)(x), y).detach())
    assert first > 0.98 * math.log(2)  # the premise, by hand: near-equal logits for every image
    r = train_small(tmp_path / "run", _cfg(lr=0.0, steps=20, give_up_after=5, window=50), (x, y))
    assert r["stuck_at_chance"] is True and r["steps"] == 5
    r = train_small(tmp_path / "never", _cfg(lr=0.0, steps=6, give_up_after=0), (x, y))
    assert r["stuck_at_chance"] is False and r["steps"] == 6


def test_the_target_error_stops_training_and_names_the_step_and_epoch(tmp_path: Path, monkeypatch, tiny) -> None:
    """Every batch classified right (labels = the frozen network's own predictions): the trailing error is 0
    from the first step, but the target is only checked once ``window`` steps exist."""
    data = _known_errors(monkeypatch, tiny, [0.0])
    r = train_small(tmp_path / "run", _cfg(lr=0.0, steps=20, window=3, stop_at_error=0.25, batch_size=2), data)
    assert r["reached_step"] == 3 and r["steps"] == 3 and r["reached_epoch"] == 1.5


def test_progress_is_logged_every_hundred_steps(tmp_path: Path, tiny) -> None:
    lines: list[str] = []
    train_small(tmp_path / "run", _cfg(lr=0.0, steps=200, window=5), _data(), log=lines.append)
    assert len(lines) == 2
    assert lines[0].startswith("  run: step 100, trailing train error ") and lines[0].endswith(" s/step")
    assert lines[1].startswith("  run: step 200, ")


def test_checkpoints_are_written_every_n_steps_and_hold_the_position(tmp_path: Path, monkeypatch, tiny) -> None:
    """Interrupted after step 5 with checkpoints every 2 steps: the checkpoint holds step 4 and its history."""
    x, y = _data(8)
    real = smallnet._batch
    stop_at_5 = _interrupted_at(5)
    monkeypatch.setattr(smallnet, "_batch", stop_at_5)
    with pytest.raises(KeyboardInterrupt):
        train_small(tmp_path / "run", _cfg(steps=8, checkpoint_every=2), (x, y))
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["step"] == 4 and len(state["errors"]) == 4 and len(state["losses"]) == 4
    assert state["reached"] == -1 and state["seconds"] > 0
    assert json.loads(state["curve"]) == [] and json.loads(state["stats"]) == []
    monkeypatch.setattr(smallnet, "_batch", real)
    r = train_small(tmp_path / "run", _cfg(steps=8, checkpoint_every=2), (x, y))
    assert r["steps"] == 8 and len(r["trailing_train_error"]) == 8


def test_lrn_statistics_are_taken_every_n_steps_and_at_the_end(tmp_path: Path) -> None:
    r = train_small(tmp_path / "run", _cfg(steps=5, lrn=True, stats_every=2), _data())
    assert [s["step"] for s in r["lrn_statistics"]] == [0, 2, 4, 5]
    assert set(r["lrn_statistics"][0]) == {"step", "lrn1", "lrn2"}
    r = train_small(tmp_path / "even", _cfg(steps=4, lrn=True, stats_every=2), _data())
    assert [s["step"] for s in r["lrn_statistics"]] == [0, 2, 4]  # the last step is not measured twice
    r = train_small(tmp_path / "plain", _cfg(steps=4, lrn=False, stats_every=2), _data())
    assert "lrn_statistics" not in r


def test_the_holdout_is_checked_every_n_steps_and_at_the_end(tmp_path: Path) -> None:
    x, y = _data(8)
    r = train_small(tmp_path / "run", _cfg(steps=5, eval_every=2), (x, y), test=(x, y), holdout=(x[:4], y[:4]))
    assert [c[0] for c in r["holdout_curve"]] == [2, 4, 5] and r["holdout_images"] == 4 and r["test_images"] == 8
    best_step, best_err = min(r["holdout_curve"], key=lambda c: (c[1], c[0]))
    assert (r["best_step"], r["holdout_error"]) == (best_step, best_err)
    r = train_small(tmp_path / "none", _cfg(steps=2, eval_every=0), (x, y), holdout=(x[:4], y[:4]))
    assert (tmp_path / "run" / "best.pt").is_file()
    assert "holdout_curve" not in r and not (tmp_path / "none" / "best.pt").exists()


def test_augmentation_is_a_function_of_seed_and_step_and_reaches_every_shift() -> None:
    """The draws come from (seed, step) alone, not from the global generator; all-ones images show the shift
    as zero columns/rows coming in: over 80 steps dx and dy take every value of 0..4 (shift -2..2)."""
    x, y = torch.arange(4 * 3 * 36, dtype=torch.float32).reshape(4, 3, 6, 6) + 1, torch.arange(4)
    cfg = SmallRun(batch_size=4, seed=2, augment=True)
    for step in range(8):  # flips and shifts alike: the global generator's state does not matter
        torch.manual_seed(1)
        first = _batch(x, y, step, cfg)[0]
        torch.manual_seed(99)
        assert torch.equal(_batch(x, y, step, cfg)[0], first)
    x = torch.ones(4, 3, 6, 6)
    dxs, dys = set(), set()
    for step in range(80):
        xb = _batch(x, y, step, cfg)[0][0, 0]  # (6, 6): flips do not move zero columns of a symmetric pattern
        cols, rows = xb.sum(0) > 0, xb.sum(1) > 0
        left, top = int((~cols[:3]).sum()), int((~rows[:3]).sum())
        right, bottom = int((~cols[3:]).sum()), int((~rows[3:]).sum())
        dxs.add(2 - left if left else 2 + right)
        dys.add(2 - top if top else 2 + bottom)
    assert dxs == {0, 1, 2, 3, 4} and dys == {0, 1, 2, 3, 4}


def test_the_run_folder_and_its_parents_are_made_and_the_init_is_passed(tmp_path: Path) -> None:
    """cuda-convnet's init has zero biases; at rate 0 they stay zero in the saved model."""
    run = tmp_path / "a" / "b" / "run"
    train_small(run, _cfg(lr=0.0, steps=1, init="cuda-convnet"), _data())
    state = torch.load(run / "model.pt", weights_only=True)
    assert all(torch.all(state[f"{name}.bias"] == 0) for name in ("conv1", "conv2", "conv3", "fc"))


def test_a_resumed_run_keeps_its_holdout_curve(tmp_path: Path, monkeypatch) -> None:
    x, y = _data(8)
    real = smallnet._batch
    stop_at_5 = _interrupted_at(5)
    cfg = _cfg(steps=6, eval_every=2, checkpoint_every=2)
    monkeypatch.setattr(smallnet, "_batch", stop_at_5)
    with pytest.raises(KeyboardInterrupt):
        train_small(tmp_path / "run", cfg, (x, y), holdout=(x[:4], y[:4]))
    monkeypatch.setattr(smallnet, "_batch", real)
    r = train_small(tmp_path / "run", cfg, (x, y), holdout=(x[:4], y[:4]))
    assert [c[0] for c in r["holdout_curve"]] == [2, 4, 6]


# --------------------------------------------------------------------------- edges of the loop


class _Clock:
    """``time`` for smallnet: every ``perf_counter()`` call is 0.37 s after the previous one."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        self.now += 0.37
        return self.now


def test_wall_time_and_seconds_per_step_come_from_the_clock(tmp_path: Path, monkeypatch, tiny) -> None:
    """One clock reading at the start and one at the end: 0.37 s, rounded to 0.4 for the record."""
    monkeypatch.setattr(smallnet, "time", _Clock())
    r = train_small(tmp_path / "one", _cfg(steps=1), _data())
    assert r["wall_seconds"] == 0.4 and isinstance(r["wall_seconds"], float)
    assert r["seconds_per_step"] == pytest.approx(0.37) and r["trailing_every"] == 1
    r = train_small(tmp_path / "three", _cfg(steps=3), _data())
    assert r["seconds_per_step"] == pytest.approx(0.37 / 3)


def test_a_resumed_run_adds_its_time_to_the_time_before_the_interruption(tmp_path: Path, monkeypatch,
                                                                          tiny) -> None:
    """First run: start, checkpoint at step 2 (0.37 s saved), killed at step 3.  Second run: start, checkpoint
    at step 4, end: 2 × 0.37 s more, so 1.11 s in all (1.1 rounded)."""
    monkeypatch.setattr(smallnet, "time", _Clock())
    cfg = _cfg(steps=4, checkpoint_every=2)
    _killed_at(monkeypatch, tmp_path / "run", cfg, _data(), 3)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["seconds"] == pytest.approx(0.37)
    r = train_small(tmp_path / "run", cfg, _data())
    assert r["wall_seconds"] == 1.1 and r["seconds_per_step"] == pytest.approx(1.11 / 4)


def test_the_progress_line_shows_the_trailing_error_and_the_time_per_step(tmp_path: Path, monkeypatch,
                                                                           tiny) -> None:
    """Errors cycle 1, 0.5, 0, 0.25; at step 100 the last 3 are 0.5, 0, 0.25 (mean 0.25); the clock moved
    0.37 s over 100 steps."""
    monkeypatch.setattr(smallnet, "time", _Clock())
    data = _known_errors(monkeypatch, tiny, [1.0, 0.5, 0.0, 0.25])
    lines: list[str] = []
    train_small(tmp_path / "run", _cfg(lr=0.0, steps=100, window=3), data, log=lines.append)
    assert lines == ["  run: step 100, trailing train error 0.250, 0.004 s/step"]


def test_a_run_killed_after_reaching_its_target_resumes_to_the_same_result(tmp_path: Path, monkeypatch,
                                                                          tiny) -> None:
    """Every step's error is 0: the target is reached at step 3 (the window), where a checkpoint is also
    written; killed while writing its result, the run resumes from that checkpoint and trains no further."""
    data = _known_errors(monkeypatch, tiny, [0.0])
    cfg = _cfg(lr=0.0, steps=20, window=3, stop_at_error=0.25, checkpoint_every=3)

    def killed(_cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(smallnet, "asdict", killed)
    with pytest.raises(KeyboardInterrupt):
        train_small(tmp_path / "run", cfg, data)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["reached"] == 3
    monkeypatch.undo()
    monkeypatch.setattr(smallnet, "FourLayerNet", TinyNet)
    data = _known_errors(monkeypatch, tiny, [0.0])
    r = train_small(tmp_path / "run", cfg, data)
    assert r["reached_step"] == 3 and r["steps"] == 3


def test_a_checkpoint_without_curve_or_statistics_resumes(tmp_path: Path, monkeypatch) -> None:
    """A checkpoint of an older version has no ``curve`` or ``stats``: the run resumes with empty ones, and the
    statistics at the end are still taken (none fell on a multiple of 10 after the resume)."""
    x, y = _data(8)
    cfg = _cfg(steps=5, checkpoint_every=3, lrn=True, stats_every=10)
    _killed_at(monkeypatch, tmp_path / "run", cfg, (x, y), 4)
    path = tmp_path / "run" / "last.pt"
    state = torch.load(path, weights_only=True)
    assert [s["step"] for s in json.loads(state.pop("stats"))] == [0]
    del state["curve"]
    torch.save(state, path)
    r = train_small(tmp_path / "run", cfg, (x, y))
    assert r["steps"] == 5 and [s["step"] for s in r["lrn_statistics"]] == [5]


def test_statistics_rarer_than_the_run_are_taken_at_the_start_and_the_end(tmp_path: Path) -> None:
    r = train_small(tmp_path / "run", _cfg(steps=3, lrn=True, stats_every=10), _data())
    assert [s["step"] for s in r["lrn_statistics"]] == [0, 3]


def test_a_run_diverging_at_its_first_step_has_no_trailing_error_or_holdout(tmp_path: Path, tiny) -> None:
    x, y = torch.full((8, 3, SIZE, SIZE), float("inf")), torch.arange(8) % 2
    r = train_small(tmp_path / "run", _cfg(steps=5, eval_every=1), (x, y), holdout=(x[:4], y[:4]))
    assert r["diverged"] is True and r["steps"] == 1
    assert r["final_trailing_train_error"] is None and r["trailing_train_error"] == []
    assert "holdout_curve" not in r and not (tmp_path / "run" / "best.pt").exists()


def test_the_best_weights_give_the_test_error_and_the_lrn_statistics(tmp_path: Path) -> None:
    """With a holdout, the test images and the LRN statistics are read with best.pt's weights, on the test set
    and the holdout's first batch respectively; the error by hand: the share of wrong argmaxes."""
    x, y = _data(8, classes=2)
    tx, ty = _data(6, classes=2, seed=1)
    r = train_small(tmp_path / "run", _cfg(lr=0.05, steps=4, eval_every=1, lrn=True, stats_every=2), (x, y),
                    test=(tx, ty), holdout=(x[:5], y[:5]))
    torch.manual_seed(0)
    model = FourLayerNet("relu", True, 2, SIZE)
    model.load_state_dict(torch.load(tmp_path / "run" / "best.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        wrong = (model(tx).argmax(1) != ty).float().mean().item()
    assert r["test_error"] == pytest.approx(wrong) and r["test_images"] == 6
    assert r["lrn_statistics_best"] == smallnet.lrn_statistics(model, x[:4])
    assert r["holdout_images"] == 5


def test_epochs_count_whole_batches_only(tmp_path: Path, tiny) -> None:
    r = train_small(tmp_path / "run", _cfg(steps=3), _data(10))  # 10 images, batches of 4: 2 per epoch
    assert r["steps_per_epoch"] == 2 and r["epochs"] == 1.5


def test_a_holdout_checked_every_step(tmp_path: Path, tiny) -> None:
    x, y = _data(8)
    r = train_small(tmp_path / "run", _cfg(steps=3, eval_every=1), (x, y), holdout=(x[:4], y[:4]))
    assert [c[0] for c in r["holdout_curve"]] == [1, 2, 3]


def test_on_a_tie_the_holdout_keeps_the_earlier_weights(tmp_path: Path, tiny) -> None:
    """Two identical holdout images with labels 0 and 1: every network gets exactly one wrong, so the
    holdout error is 0.5 at steps 2 and 4, and best.pt must be the weights after step 2."""
    x, y = _data(8)
    holdout = (torch.stack([x[0], x[0]]), torch.tensor([0, 1]))
    r = train_small(tmp_path / "long", _cfg(lr=0.05, steps=4, eval_every=2), (x, y), holdout=holdout)
    assert r["holdout_curve"] == [[2, 0.5], [4, 0.5]] and r["best_step"] == 2
    train_small(tmp_path / "short", _cfg(lr=0.05, steps=2), (x, y))
    best = torch.load(tmp_path / "long" / "best.pt", weights_only=True)
    at_2 = torch.load(tmp_path / "short" / "model.pt", weights_only=True)
    last = torch.load(tmp_path / "long" / "model.pt", weights_only=True)
    assert torch.equal(best["fc.weight"], at_2["fc.weight"]) and not torch.equal(best["fc.weight"], last["fc.weight"])


def test_a_run_that_learns_does_not_give_up(tmp_path: Path, monkeypatch, tiny) -> None:
    """Labels = the frozen network's own confident predictions: the loss is far below 0.98 ln 2 at step 2, so
    the run goes on to its last step."""
    x = torch.randn(4, 3, SIZE, SIZE) * 100
    torch.manual_seed(0)
    predicted = tiny("relu", False, 2, SIZE)(x).argmax(1).detach()
    monkeypatch.setattr(smallnet, "_batch", lambda xs, ys, step, c: (x, predicted))
    r = train_small(tmp_path / "run", _cfg(lr=0.0, steps=6, give_up_after=2, window=2), (x, torch.arange(4) % 2))
    assert r["stuck_at_chance"] is False and r["steps"] == 6


def test_a_trailing_error_exactly_at_the_target_reaches_it(tmp_path: Path, monkeypatch, tiny) -> None:
    """One of two images wrong at every step: the trailing error is exactly 0.5, which meets a 0.5 target."""
    data = _known_errors(monkeypatch, tiny, [0.5], n=2)
    r = train_small(tmp_path / "run", _cfg(lr=0.0, steps=10, window=2, stop_at_error=0.5, batch_size=2), data)
    assert r["reached_step"] == 2


def test_a_resumed_run_keeps_its_lrn_statistics(tmp_path: Path, monkeypatch) -> None:
    """Statistics at steps 0 and 2 are in the checkpoint of step 4; the resumed run adds 4 and the end, 6."""
    x, y = _data(8)
    cfg = _cfg(steps=6, checkpoint_every=4, lrn=True, stats_every=2)
    _killed_at(monkeypatch, tmp_path / "run", cfg, (x, y), 5)
    r = train_small(tmp_path / "run", cfg, (x, y))
    assert [s["step"] for s in r["lrn_statistics"]] == [0, 2, 4, 6]


def test_a_sweep_point_stops_where_the_fastest_rate_so_far_reached_the_target(tmp_path: Path, monkeypatch,
                                                                               tiny) -> None:
    """slower_than=5: a run whose trailing error is still 1 at step 5 stops there, marked stopped_slower; one that
    reaches the target at step 5 exactly is not; a slower_than at or above steps is no stop (the run goes to steps)."""
    data = _known_errors(monkeypatch, tiny, [1.0])
    r = train_small(tmp_path / "slow", _cfg(lr=0.0, steps=20, window=2, stop_at_error=0.25, slower_than=5), data)
    assert (r["steps"], r["reached_step"], r["stopped_slower"]) == (5, None, True)
    r = train_small(tmp_path / "capped-above", _cfg(lr=0.0, steps=6, window=2, stop_at_error=0.25, slower_than=6),
                    data)
    assert (r["steps"], r["reached_step"], r["stopped_slower"]) == (6, None, False)
    r = train_small(tmp_path / "none", _cfg(lr=0.0, steps=7, window=2, stop_at_error=0.25), data)
    assert (r["steps"], r["stopped_slower"]) == (7, False)
    # wrong at steps 0-2 (indices), right from index 3: trailing means of 2 reach 0 at step 5 exactly
    data = _known_errors(monkeypatch, tiny, [1.0, 1.0, 1.0, 0.0, 0.0] + [0.0] * 20)
    r = train_small(tmp_path / "tie", _cfg(lr=0.0, steps=20, window=2, stop_at_error=0.25, slower_than=5), data)
    assert (r["steps"], r["reached_step"], r["stopped_slower"]) == (5, 5, False)


def test_a_kept_sweep_point_is_reused_unless_it_stopped_sooner_than_asked(tmp_path: Path) -> None:
    """Another slower_than answers the same question (can this rate be the fastest?) unless the result stopped
    at its own slower_than before this run's: then it is refused by name (it has not run far enough)."""
    from dataclasses import asdict

    from alexnet.errors import UserError

    run = tmp_path / "run"
    run.mkdir()

    def kept(slower_than: int, stopped: bool, reached: int | None) -> None:
        made = {**asdict(_cfg()), "slower_than": slower_than}
        (run / "result.json").write_text(json.dumps({"config": made, "steps": 300, "stopped_slower": stopped,
                                                     "reached_step": reached, "train_images": 8}))

    kept(0, False, 300)  # made before any cap, reached at 300: any cap may reuse it
    assert train_small(run, _cfg(slower_than=200), _data())["reached_step"] == 300
    kept(0, False, None)  # ran to steps without reaching
    assert train_small(run, _cfg(slower_than=200), _data())["steps"] == 300
    kept(300, True, None)  # stopped at 300: enough for a cap of 300 or less
    assert train_small(run, _cfg(slower_than=300), _data())["stopped_slower"]
    assert train_small(run, _cfg(slower_than=100), _data())["stopped_slower"]
    with pytest.raises(UserError, match=r"run/result.json: stopped at step 300 \(slower than slower_than=300\), "
                                        r"this run asks for slower_than=400; remove it to train again"):
        train_small(run, _cfg(slower_than=400), _data())
    with pytest.raises(UserError, match=r"this run asks for slower_than=0;"):
        train_small(run, _cfg(), _data())
