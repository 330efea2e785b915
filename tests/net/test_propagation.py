"""alexnet.net.propagation: activation and gradient statistics at initialisation, and the He inits."""

from __future__ import annotations

import math

import torch

from alexnet.net.init import pixel_std
from alexnet.net.model import INITS, build_model
from alexnet.net.propagation import signal_report


def _batch(size: int = 32, n: int = 16, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g) * 64  # mean-subtracted 0..255 pixels
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def _model(init: str):
    torch.manual_seed(0)
    return build_model(num_classes=10, input_size=32, width=0.25, fc_units=64, init=init)


def test_report_covers_every_layer_and_leaves_the_model_as_it_was():
    model = _model("paper")
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _batch()
    report = signal_report(model, x, y)
    assert [r.name for r in report.layers] == [n for n, _ in model.named_children()]
    assert {r.name for r in report.weighted()} == {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"}
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert math.isclose(report.chance_loss, math.log(10))
    assert "fc8" in report.table() and "loss" in report.table()


def test_paper_init_in_a_narrow_network_loses_the_image_before_the_logits():
    report = signal_report(_model("paper"), *_batch())
    assert report.layer("conv1").signal > 0.9
    assert report.layer("fc8").signal < 0.05
    assert any("bias-1 trap" in n for n in report.notes)


def test_he_scaled_keeps_the_image_and_unit_logits_with_balanced_gradients():
    report = signal_report(_model("he-scaled"), *_batch())
    paper = signal_report(_model("paper"), *_batch())
    assert report.layer("fc8").signal > 10 * paper.layer("fc8").signal
    assert 0.2 < report.logits_std < 5
    ratios = [r.grad_ratio for r in report.weighted() if r.name != "fc8"]
    assert max(ratios) < 20 * min(ratios)


def test_plain_he_on_pixel_units_gives_huge_logits():
    report = signal_report(_model("he"), *_batch())
    assert report.logits_std > 10
    assert any("too large" in n for n in report.notes)


def test_he_inits_set_biases():
    assert {"he", "he-bias", "he-scaled"} <= set(INITS)
    he, he_bias = _model("he"), _model("he-bias")
    assert float(he.conv2.bias.detach().abs().max()) == 0 and float(he.fc6.bias.detach().abs().max()) == 0
    assert torch.allclose(he_bias.conv2.bias, torch.full_like(he_bias.conv2.bias, 0.1))
    assert float(he_bias.conv1.bias.detach().abs().max()) == 0 and float(he_bias.fc8.bias.detach().abs().max()) == 0
    fan_in = he.fc7.weight.shape[1]
    assert abs(float(he.fc7.weight.detach().std()) - math.sqrt(2 / fan_in)) < 0.15 * math.sqrt(2 / fan_in)
    scaled = _model("he-scaled")
    gain = (1 / pixel_std()) ** (1 / 8)
    assert abs(float(scaled.fc7.weight.detach().std()) / float(he.fc7.weight.detach().std()) - gain) < 0.05


def test_training_writes_the_report_first_and_it_changes_nothing(tiny_store, tmp_path):
    import json

    from alexnet.training.trainer import train
    from helpers import tiny_config

    cfg = lambda: tiny_config(tiny_store.path, "model.init=\"paper\"")  # noqa: E731
    train(cfg(), tmp_path / "a", progress=False)
    text = (tmp_path / "a" / "signal.txt").read_text()
    assert "fc8" in text and "ln 4" in text
    events = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    (signal,) = [e for e in events if e.get("event") == "signal"]
    assert signal["logits_std"] >= 0 and "notes" in signal
    # training with the report stays deterministic: a second run gives the same weights bit for bit
    train(cfg(), tmp_path / "b", progress=False)
    from alexnet.inference.trained import read_checkpoint

    a, b = (read_checkpoint(tmp_path / r)["model"] for r in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_report_leaves_the_global_random_state_alone(tmp_path):
    from alexnet.training.health import report_signal

    model = _model("he-scaled")
    before = torch.get_rng_state()
    report_signal(model, _batch(), tmp_path, torch.autocast("cpu", enabled=False))
    assert torch.equal(before, torch.get_rng_state()) and (tmp_path / "signal.txt").is_file()


def test_summary_prints_the_report_for_a_store(tiny_store, capsys):
    from alexnet.cli import main

    assert main(["summary", "--input-size", "16", "--width", "0.125", "--fc-units", "32", "--init", "he-scaled",
                 "--data", str(tiny_store.path)]) == 0
    out = capsys.readouterr().out
    assert "At initialisation (he-scaled)" in out and "logits std" in out and "ln 4" in out
