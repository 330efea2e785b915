"""The "four-layer convolutional network" of §3.1 (Figure 1) and §3.3 (CIFAR-10), and its training loop.

The paper does not describe it ("specified precisely by the code and parameter
files" of cuda-convnet, footnote 3).  We use the shape of cuda-convnet's
``layers-18pct.cfg`` CIFAR-10 network, four layers with weights::

    conv1 32 x 5x5 pad 2 -> f -> max-pool 3/2 -> [LRN]     32 -> 15
    conv2 32 x 5x5 pad 2 -> f -> max-pool 3/2 -> [LRN]     15 -> 7
    conv3 64 x 5x5 pad 2 -> f -> max-pool 3/2              7 -> 3
    fc    576 -> 10, softmax

``f`` is ReLU or tanh.  Differences from layers-18pct: max-pooling everywhere
(it used average pooling in layers 2 and 3) and the paper's cross-map LRN of
§3.3 (k=2, n=5, alpha=1e-4, beta=0.75, the paper's reading) instead of
cuda-convnet's same-map ``rnorm``.  Initialisation: PyTorch's default
(uniform, fan-in scaled) or layers-18pct's Gaussians, identical for both
non-linearities.  Inputs (:func:`cifar_tensors`): the training set's mean image
subtracted, then either left at §2's 0-255 pixel scale (``raw``, the scale the
paper's LRN constants k = 2, alpha = 1e-4 were chosen for) or divided by one
global standard deviation (``std``, about 64 on CIFAR-10: it shrinks
alpha * sum(a^2) by 64^2, and the LRN then does nothing).

Training: plain SGD with momentum 0.9, batch 128, a constant learning rate
(optionally divided by 10 for the last fraction of steps), optional weight
decay, optional flips and +-2-pixel translations.  The batch order and every
augmentation draw are pure functions of (seed, step), and a checkpoint is
written every ``checkpoint_every`` steps, so an interrupted run resumes to the
same result.  With a ``holdout`` slice of the training set the network is
evaluated on it every ``eval_every`` steps and the best weights are kept
(``best.pt``): the stopping point is decided there, and the test split is read
once, with those weights.  :func:`lrn_statistics` measures alpha * sum(a^2) / k
of every LRN layer (how far the divisor moves from k), every ``stats_every``
steps on the training batch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from alexnet.errors import UserError
from alexnet.training.checkpoint import atomic_save
from alexnet.net.lrn import LocalResponseNorm, window_sum
from alexnet.paper import CIFAR, LEARNING, LRN_PARAMS, POOL

#: layers-18pct's kernel counts.
CHANNELS: tuple[int, int, int] = (32, 32, 64)
KERNEL = 5
#: layers-18pct's initial weight standard deviations (initW of conv1, conv2, conv3, fc10; biases 0), for
#: ``init="cuda-convnet"``; a property of that configuration file, not a number of the paper.
CUDA_CONVNET_INIT_STD: tuple[float, ...] = (1e-4, 1e-2, 1e-2, 1e-1)
INITS = ("default", "cuda-convnet")
#: Input scales of :func:`cifar_tensors`: ``raw`` (§2: 0-255 minus the mean image) or ``std`` (then / global std).
INPUT_SCALES = ("raw", "std")


class FourLayerNet(nn.Sequential):
    def __init__(self, activation: str = "relu", lrn: bool = False, num_classes: int = 10, input_size: int = 32,
                 init: str = "default"):
        act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
        layers: list[tuple[str, nn.Module]] = []
        c_in, size = 3, input_size
        for i, c in enumerate(CHANNELS, start=1):
            layers += [(f"conv{i}", nn.Conv2d(c_in, c, KERNEL, padding=KERNEL // 2)), (f"act{i}", act()),
                       (f"pool{i}", nn.MaxPool2d(POOL.size, POOL.stride))]
            size = (size - POOL.size) // POOL.stride + 1
            if lrn and i < len(CHANNELS):
                layers.append((f"lrn{i}", LocalResponseNorm(LRN_PARAMS.n, LRN_PARAMS.alpha, LRN_PARAMS.beta,
                                                            LRN_PARAMS.k)))
            c_in = c
        layers += [("flatten", nn.Flatten()), ("fc", nn.Linear(c_in * size * size, num_classes))]
        from collections import OrderedDict

        super().__init__(OrderedDict(layers))
        weighted = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert len(weighted) == CIFAR.four_layer_conv
        if init == "cuda-convnet":
            with torch.no_grad():
                for m, std in zip(weighted, CUDA_CONVNET_INIT_STD):
                    m.weight.normal_(0.0, std)
                    m.bias.zero_()
        elif init != "default":
            raise ValueError(f"init: unknown value {init!r}; allowed: {', '.join(INITS)}")


@dataclass
class SmallRun:
    activation: str = "relu"
    lrn: bool = False
    lr: float = 0.01
    steps: int = 1000
    batch_size: int = LEARNING.batch_size
    momentum: float = LEARNING.momentum
    weight_decay: float = 0.0
    augment: bool = False
    seed: int = 0
    window: int = 50  # steps in the trailing training-error average
    stop_at_error: float = 0.0  # stop once the trailing training error is at most this (0: never)
    lr_drop_at: float = 0.0  # fraction of steps after which the rate is divided by 10 (0: never)
    checkpoint_every: int = 200
    threads: int = 0
    init: str = "default"  # "default" (PyTorch's fan-in uniform) or "cuda-convnet" (layers-18pct's Gaussians)
    give_up_after: int = 300  # stop a run whose loss is still at chance (ln C) after this many steps (0: never)
    eval_every: int = 0  # evaluate the holdout slice every this many steps and keep the best weights (0: never)
    stats_every: int = 0  # measure the LRN statistic on the training batch every this many steps (0: never)
    #: stop at this step if ``stop_at_error`` is not reached by then (0: never): a rate sweep's run whose rate
    #: cannot beat the fastest rate so far, which reached the target at this step
    slower_than: int = 0


def normalise(images: np.ndarray, mean: np.ndarray, std: float) -> Tensor:
    """uint8 (N, S, S, 3) -> float (N, 3, S, S), mean image subtracted, divided by ``std``."""
    x = (images.astype(np.float32) - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _batch(x: Tensor, y: Tensor, step: int, cfg: SmallRun) -> tuple[Tensor, Tensor]:
    n = x.shape[0]
    per_epoch = n // cfg.batch_size
    epoch, i = divmod(step, per_epoch)
    order = np.random.default_rng([cfg.seed, epoch, 0xC1FA]).permutation(n)
    idx = torch.from_numpy(order[i * cfg.batch_size:(i + 1) * cfg.batch_size])
    xb, yb = x[idx], y[idx]
    if cfg.augment:
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([cfg.seed, step, 0xA06]).generate_state(1)[0]))
        flip = torch.rand(xb.shape[0], generator=g) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        pad = 2
        padded = nn.functional.pad(xb, (pad, pad, pad, pad))
        dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=g).tolist()
        xb = padded[:, :, dy:dy + xb.shape[2], dx:dx + xb.shape[3]]
    return xb, yb


@torch.no_grad()
def error_rate(model: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> float:
    model.eval()
    wrong = 0
    for s in range(0, x.shape[0], batch):
        wrong += int((model(x[s:s + batch]).argmax(1) != y[s:s + batch]).sum())
    model.train()
    return wrong / max(1, x.shape[0])


@torch.no_grad()
def lrn_statistics(model: nn.Module, x: Tensor) -> dict[str, dict[str, float]]:
    """alpha * sum(a^2) / k of every LRN layer of ``model`` on the batch ``x``: its mean and max over all
    images, maps and positions, with alpha as the layer applies it (``effective_alpha``: as printed in
    §3.3 unless the layer divides it by n).  The layer divides by ``k^beta * (1 + this)^beta``: where it is
    much below 1 the LRN only rescales its input by ``k^-beta``."""
    found: dict[str, dict[str, float]] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, LocalResponseNorm):
            def hook(mod: LocalResponseNorm, inputs: tuple[Tensor, ...], name: str = name) -> None:
                a = inputs[0].float()
                c = a.shape[1] // mod.groups
                sq = (a * a).reshape(a.shape[0], mod.groups, c, -1)
                s = window_sum(sq, mod.n // 2, (mod.n - 1) // 2, dim=2) * (mod.effective_alpha / mod.k)
                found[name] = {"mean": float(s.mean()), "max": float(s.max())}
            hooks.append(m.register_forward_pre_hook(hook))
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return found


def train_small(run_dir: Path, cfg: SmallRun, train: tuple[Tensor, Tensor],
                test: tuple[Tensor, Tensor] | None = None, log=None,
                holdout: tuple[Tensor, Tensor] | None = None) -> dict[str, Any]:
    """Train one small network; ``run_dir/result.json`` marks it finished (then it is just read back).

    With ``holdout`` and ``cfg.eval_every`` the holdout error is measured every ``eval_every`` steps (and at
    the end) and the best weights are kept in ``best.pt``: ``test`` is then read once, with them."""
    run_dir = Path(run_dir)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return _finished_result(result_path, cfg, int(train[0].shape[0]))
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    x, y = train
    if x.shape[0] < cfg.batch_size:
        raise ValueError(f"{x.shape[0]} training images, fewer than one batch of {cfg.batch_size}")
    torch.manual_seed(cfg.seed)
    model = FourLayerNet(cfg.activation, cfg.lrn, int(y.max()) + 1, x.shape[2], cfg.init)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    errors: list[float] = []
    losses: list[float] = []
    curve: list[list[float]] = []  # [step, holdout error]
    stats: list[dict[str, Any]] = []  # {"step": s, "lrn1": {"mean", "max"}, ...}
    step, reached, seconds = 0, None, 0.0
    ckpt, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, errors, losses = int(state["step"]), list(state["errors"]), list(state["losses"])
        reached = state["reached"] if state["reached"] >= 0 else None
        seconds = float(state["seconds"])
        curve = json.loads(state.get("curve", "[]"))
        stats = json.loads(state.get("stats", "[]"))
    model.train()
    per_epoch = x.shape[0] // cfg.batch_size
    diverged = stuck = False
    chance = math.log(int(y.max()) + 1)
    t0 = time.perf_counter() - seconds
    watch = holdout is not None and cfg.eval_every > 0

    def save() -> None:
        atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "errors": errors,
                     "losses": losses, "reached": -1 if reached is None else reached,
                     "seconds": time.perf_counter() - t0, "curve": json.dumps(curve), "stats": json.dumps(stats)},
                    ckpt)

    def check_holdout() -> None:
        if curve and curve[-1][0] == step:
            return
        err = error_rate(model, *holdout)
        if not curve or err < min(e for _, e in curve):
            atomic_save(model.state_dict(), best_path)
        curve.append([step, err])

    limit = min(cfg.steps, cfg.slower_than) if cfg.slower_than else cfg.steps
    while step < limit and reached is None:
        lr = cfg.lr / 10 if cfg.lr_drop_at and step >= cfg.lr_drop_at * cfg.steps else cfg.lr
        for group in opt.param_groups:
            group["lr"] = lr
        xb, yb = _batch(x, y, step, cfg)
        if cfg.stats_every and step % cfg.stats_every == 0 and cfg.lrn:
            stats.append({"step": step, **lrn_statistics(model, xb)})
        logits = model(xb)
        loss = nn.functional.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        lv = float(loss.detach())
        if not math.isfinite(lv):
            diverged = True
            break
        losses.append(lv)
        errors.append(float((logits.detach().argmax(1) != yb).float().mean()))
        if cfg.give_up_after and step >= cfg.give_up_after and \
                np.mean(losses[-cfg.window:]) > (1 - 0.02) * chance:
            stuck = True
            break
        if cfg.stop_at_error and step >= cfg.window and np.mean(errors[-cfg.window:]) <= cfg.stop_at_error:
            reached = step
        if watch and step % cfg.eval_every == 0:
            check_holdout()
        if log and step % 100 == 0:
            log(f"  {run_dir.name}: step {step}, trailing train error {np.mean(errors[-cfg.window:]):.3f}, "
                f"{(time.perf_counter() - t0) / step:.3f} s/step")
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            save()
    if watch and not diverged:
        check_holdout()
    if cfg.stats_every and cfg.lrn and not diverged and (not stats or stats[-1]["step"] != step):
        stats.append({"step": step, **lrn_statistics(model, _batch(x, y, step, cfg)[0])})
    wall = time.perf_counter() - t0
    trailing = [float(np.mean(errors[max(0, i + 1 - cfg.window):i + 1])) for i in range(len(errors))]
    result: dict[str, Any] = {
        "config": asdict(cfg), "steps": step, "epochs": step / per_epoch, "steps_per_epoch": per_epoch,
        "reached_step": reached, "reached_epoch": None if reached is None else reached / per_epoch,
        "diverged": diverged, "stuck_at_chance": stuck, "final_trailing_train_error": trailing[-1] if trailing else None,
        # ran to ``slower_than`` without reaching the target (not to ``steps``)
        "stopped_slower": reached is None and not (diverged or stuck) and 0 < cfg.slower_than < cfg.steps,
        "trailing_train_error": trailing[::max(1, len(trailing) // 400)],
        "trailing_every": max(1, len(trailing) // 400), "wall_seconds": round(wall, 1),
        "seconds_per_step": wall / max(1, step), "train_images": int(x.shape[0]),
    }
    if stats:
        result["lrn_statistics"] = stats
    torch.save(model.state_dict(), run_dir / "model.pt")
    if watch and curve:
        best_step, best_err = min(curve, key=lambda c: (c[1], c[0]))
        result.update(holdout_curve=curve, best_step=int(best_step), holdout_error=best_err,
                      holdout_images=int(holdout[0].shape[0]))
        model.load_state_dict(torch.load(best_path, weights_only=True))
        if cfg.lrn:
            result["lrn_statistics_best"] = lrn_statistics(model, holdout[0][:cfg.batch_size])
    if test is not None and not diverged:
        result["test_error"] = error_rate(model, *test)  # read once: the best weights when a holdout decided
        result["test_images"] = int(test[0].shape[0])
    result_path.write_text(json.dumps(result, indent=2))
    ckpt.unlink(missing_ok=True)
    return result


#: SmallRun fields that do not change what a run computes: a finished run made with others is still this run.
RESULT_NEUTRAL_FIELDS = ("threads", "checkpoint_every")


def _finished_result(path: Path, cfg: SmallRun, train_images: int) -> dict[str, Any]:
    """A finished run's result, read back; one line naming the file and the first field in which it was made
    differently (a result kept from another configuration or data would be reported as this run's)."""
    try:
        result = json.loads(path.read_text())
        made = dict(result["config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a finished small-network result ({type(e).__name__}: {e}); remove it to "
                        f"train again") from None
    wanted, default = asdict(cfg), asdict(SmallRun())
    for key in sorted(set(made) | set(wanted)):
        was = made.get(key, default.get(key))  # a field newer than the result was, when it was made, its default
        if key not in RESULT_NEUTRAL_FIELDS + ("slower_than",) and was != wanted.get(key):
            raise UserError(f"{path}: finished with {key}={was!r}, this run asks for "
                            f"{key}={wanted.get(key)!r}; use another run folder")
    # Another slower_than answers the same question (is this rate faster than the best so far?) unless the run
    # stopped at its own, earlier than this run would: then it has not run far enough.
    made_cap = made.get("slower_than", 0)
    if result.get("stopped_slower") and (not 0 < cfg.slower_than <= made_cap):
        raise UserError(f"{path}: stopped at step {result.get('steps')} (slower than slower_than={made_cap}), this "
                        f"run asks for slower_than={cfg.slower_than}; remove it to train again")
    if result.get("train_images", train_images) != train_images:
        raise UserError(f"{path}: finished on {result['train_images']} training images, this run has "
                        f"{train_images}; use another run folder")
    return result


def cifar_tensors(store: Path, splits: tuple[str, ...] = ("train", "val"), scale: str = "std",
                  holdout_per_class: int = 0, seed: int = 0) -> dict[str, tuple[Tensor, Tensor]]:
    """Splits of a store as float tensors, the train split's mean image subtracted; ``scale`` ``std`` also
    divides by the train split's global standard deviation, ``raw`` keeps §2's 0-255 scale.

    ``holdout_per_class`` > 0 moves that many training images of each class (seeded) to a ``holdout`` entry
    before the mean is taken: the slice that rates and stopping are decided on."""
    from alexnet.data.discover import holdout_indices
    from alexnet.experiments.stores import load_arrays

    if scale not in INPUT_SCALES:
        raise UserError(f"input_scale: unknown value {scale!r}; allowed: {', '.join(INPUT_SCALES)}", key="param")
    arrays = {s: load_arrays(store, s) for s in splits}
    if holdout_per_class:
        xs, ys = arrays["train"]
        keep, held = holdout_indices(ys, holdout_per_class, seed)
        arrays["train"], arrays["holdout"] = (xs[keep], ys[keep]), (xs[held], ys[held])
    xtr = arrays["train"][0]
    mean = xtr.astype(np.float32).mean(0)
    std = float((xtr.astype(np.float32) - mean).std()) if scale == "std" else 1.0
    return {s: (normalise(a, mean, std), torch.from_numpy(b)) for s, (a, b) in arrays.items()}
