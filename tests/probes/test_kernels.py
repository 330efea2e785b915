"""conv1 kernel grid (Figure 3) and colour specificity per column (§6.1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from alexnet.cli import main
from alexnet.probes.kernels import colour_by_column, colour_summary, column_split_null, kernel_grid, normalise_kernels
from alexnet.net.model import build_model
from alexnet.paper import ARCH


def test_grid_has_one_tile_per_kernel_in_column_order() -> None:
    model = build_model(num_classes=10)
    w = model.conv1_kernels().numpy()
    assert w.shape[0] == ARCH.conv[0].out_channels
    image, layout = kernel_grid(w, model.columns)
    tiles = normalise_kernels(w)
    th, tw = layout.tile
    assert len(layout.positions) == len(w)
    for i, (y, x) in enumerate(layout.positions):
        np.testing.assert_array_equal(image[y:y + th, x:x + tw], tiles[i])
    half = len(w) // 2
    first_block_bottom = max(y for y, _ in layout.positions[:half]) + th
    assert all(y >= first_block_bottom for y, _ in layout.positions[half:])  # column 2 below column 1
    assert layout.positions[0] < layout.positions[1] < layout.positions[half]  # row-major in each block
    ys = {(y, x) for y, x in layout.positions}
    assert len(ys) == len(w)  # no tile overlaps another's corner


def test_colour_measure_separates_grey_from_colour() -> None:
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.normal(size=(8, 1, 5, 5)), 3, axis=1)
    colour = rng.normal(size=(8, 3, 5, 5))
    cols = colour_by_column(np.concatenate([grey, colour]), 2)
    assert cols[0].colour_energy < 1e-12 and cols[0].channel_spread < 1e-12
    assert cols[1].colour_energy > 0.5 and cols[1].channel_spread > 0.2


def test_split_null_by_hand() -> None:
    # Kernels 0, 0 | 1, 1: the observed columns are 1 apart.  The 6 equal splits of four kernels (ordered
    # halves) are {0,0}|{1,1} and {1,1}|{0,0}, 1 apart, and four mixed ones, 0 apart: the null's mean
    # |difference| is 2/6 = 1/3, and a third of the splits are as far apart as the observed one.
    out = column_split_null(np.array([0.0, 0.0, 1.0, 1.0]), draws=30000)
    assert out["observed"] == 1.0
    assert abs(out["null_mean"] - 1 / 3) < 0.015 and abs(out["p"] - 1 / 3) < 0.015
    # 0, 1 | 0, 1: the columns do not differ; every split is at least as far apart (p = 1)
    mixed = column_split_null(np.array([0.0, 1.0, 0.0, 1.0]), draws=2000)
    assert mixed["observed"] == 0.0 and mixed["p"] == 1.0
    # the same seed gives the same draws
    assert column_split_null(np.arange(8.0), draws=500) == column_split_null(np.arange(8.0), draws=500)


def test_grey_and_colour_columns_are_far_outside_the_split_null() -> None:
    rng = np.random.default_rng(1)
    grey = np.repeat(rng.normal(size=(8, 1, 5, 5)), 3, axis=1)
    colour = rng.normal(size=(8, 3, 5, 5))
    summary = colour_summary(np.concatenate([grey, colour]), 2)
    # 8 grey kernels (energy 0) against 8 colour ones (about 2/3): no random split is as far apart
    assert summary["colour_energy_split_p"] < 0.01
    assert summary["colour_energy_split_null"] < 0.25
    shuffled = colour_summary(np.concatenate([grey, colour])[rng.permutation(16)], 2)
    assert shuffled["colour_energy_split_p"] > summary["colour_energy_split_p"]


def test_kernels_command(tmp_path: Path, capsys) -> None:
    from alexnet.inference.trained import KIND

    import torch

    model = build_model(num_classes=4, input_size=64, width=0.25, fc_units=16)
    ckpt = tmp_path / "c.pt"
    torch.save({"kind": KIND, "model": model.state_dict(), "model_spec": model.spec.to_dict()}, ckpt)
    out = tmp_path / "k.png"
    assert main(["kernels", str(ckpt), "--out", str(out), "--scale", "2"]) == 0
    text = capsys.readouterr().out
    assert "column 1" in text and "column 2" in text
    summary = json.loads(out.with_suffix(".json").read_text())
    n = model.conv1.weight.shape[0]
    assert summary["kernels"] == n and len(summary["per_column"]) == 2
    assert len(summary["per_kernel"]["colour_energy"]) == n
    with Image.open(out) as im:
        assert im.format == "PNG"
    assert main(["kernels", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
