"""The shared look of the experiments' error plots (alexnet.experiments.plotting)."""
from __future__ import annotations

import warnings

from alexnet.experiments import plotting


def test_error_axes_have_a_legend_only_when_something_is_labelled() -> None:
    """An arm run alone may draw no curve: its axes get no legend (and matplotlib no empty-legend warning); a
    drawn history gets a legend naming its train and val curves."""
    plt = plotting.pyplot()
    fig, (empty, drawn) = plt.subplots(1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plotting.style_error_axes(empty, "nothing drawn")
    assert empty.get_legend() is None
    hist = [{"kind": "step", "step": 5, "epoch": 0, "train_top1_error": 0.9},
            {"kind": "epoch", "step": 10, "epoch": 1, "val_top1_error": 0.8}]
    plotting.plot_history(drawn, hist, "seed 0")
    plotting.style_error_axes(drawn, "one history")
    assert [t.get_text() for t in drawn.get_legend().get_texts()] == ["seed 0 train", "seed 0 val (centre)"]
    plt.close(fig)


def test_a_run_that_decided_on_its_holdout_slice_labels_that_curve_holdout() -> None:
    plt = plotting.pyplot()
    fig, ax = plt.subplots()
    hist = [{"kind": "epoch", "step": 10, "epoch": 1, "val_top1_error": 0.8, "val_split": "holdout"}]
    plotting.plot_history(ax, hist, "seed 2")
    assert [line.get_label() for line in ax.get_lines()] == ["seed 2 holdout (centre)"]
    plt.close(fig)
