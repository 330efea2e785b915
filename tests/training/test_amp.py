"""bf16 where the hardware computes it: ``run.amp = auto``; a clear error where it cannot; an accurate LRN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alexnet import runtime
from alexnet.errors import UserError
from alexnet.net.lrn import LocalResponseNorm
from alexnet.paper import LRN_PARAMS
from alexnet.training.trainer import Trainer, train
from helpers import tiny_config


def test_auto_is_bf16_exactly_where_the_cpu_has_it(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert runtime.autocast_dtype("auto", cpu) is torch.bfloat16
    assert runtime.autocast_dtype("bf16", cpu) is torch.bfloat16
    assert runtime.autocast_dtype("off", cpu) is None
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert runtime.autocast_dtype("auto", cpu) is None
    with pytest.raises(UserError, match="does not compute bfloat16 natively"):
        runtime.autocast_dtype("bf16", cpu)
    with pytest.raises(UserError, match="unknown value 'fp8'"):
        runtime.autocast_dtype("fp8", cpu)


def test_bf16_on_a_cpu_without_it_is_one_line_naming_the_key(tiny_store, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(runtime, "cpu_flags", lambda: set())
    with pytest.raises(UserError, match="does not compute bfloat16") as err:
        Trainer(tiny_config(tiny_store.path, 'run.amp="bf16"'), tmp_path / "run", progress=False)
    assert err.value.key == "run.amp"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("divided", [False, True])
def test_lrn_in_bf16_is_accurate_to_one_rounding(divided: bool) -> None:
    # conv1-like activity (0-255 inputs, std 0.01 weights give tens): the sums of squares must not be
    # computed in bf16's 8-bit mantissa
    a = (torch.randn(4, 96, 9, 9, generator=torch.Generator().manual_seed(0)) * 40).relu()
    lrn = LocalResponseNorm(LRN_PARAMS.n, LRN_PARAMS.alpha, LRN_PARAMS.beta, LRN_PARAMS.k,
                            alpha_divided_by_n=divided, groups=2)
    x = a.bfloat16()
    exact = lrn(x.double())  # the same (rounded) input, normalised in float64
    got = lrn(x)
    assert got.dtype == torch.bfloat16
    rel = ((got.double() - exact).abs() / exact.abs().clamp_min(1e-3)).max()
    # one rounding to bf16 (unit roundoff 2^-8); sums and powers in bf16 measured 0.015 here
    assert rel <= 1.01 * 2 ** -8
    a16 = a.bfloat16().requires_grad_()
    lrn(a16).sum().backward()
    assert a16.grad.dtype == torch.bfloat16 and torch.isfinite(a16.grad.float()).all()


def test_a_short_bf16_run_follows_the_fp32_loss_curve(tiny_store, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx512_bf16"})  # bf16 autocast runs (emulated) anywhere
    losses = {}
    for amp in ("off", "bf16"):
        run = tmp_path / amp
        train(tiny_config(tiny_store.path, f'run.amp="{amp}"', "schedule.max_epochs=3", "run.log_every=1"), run,
              progress=False)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses[amp] = torch.tensor([r["loss"] for r in records if r["kind"] == "step"])
    assert len(losses["off"]) == len(losses["bf16"]) == 18
    assert (losses["off"] - losses["bf16"]).abs().max() < 0.05 * losses["off"].max()
    assert not torch.equal(losses["off"], losses["bf16"])  # bf16 really ran
