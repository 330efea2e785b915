"""``prepare --holdout N``: N training images of every class set aside for decisions, never reported on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.cli import main
from alexnet.data.discover import holdout_indices
from alexnet.data.prepare import prepare
from alexnet.data.store import Store
from alexnet.errors import UserError


def tree(root: Path, per_class: dict[str, int], size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for name, n in per_class.items():
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{name}_{i}.png")
        (root / "val" / name).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "val" / name / "v.png")
    return root


def test_holdout_takes_n_of_each_class_from_train(tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"n00000001": 7, "n00000002": 5, "n00000003": 4})
    store = Store(prepare(src, tmp_path / "s", size=12, holdout=3, seed=1, workers=1, progress=False).out)
    held, train = store.split("holdout"), store.split("train")
    assert np.bincount(held.labels, minlength=3).tolist() == [3, 3, 3]
    assert np.bincount(train.labels, minlength=3).tolist() == [4, 2, 1]
    assert not set(held.paths()) & set(train.paths())
    assert set(held.paths()) | set(train.paths()) == {str(p.relative_to(src)) for p in (src / "train").rglob("*.png")}
    # statistics come from the images the network trains on, not from the held-out ones
    expected = train.read(np.arange(len(train))).astype(np.float64).mean(0)
    np.testing.assert_allclose(store.stats().mean_image, expected, atol=1e-4)
    assert store.decision_split() == "holdout" and store.evaluation_split() == "val"


def test_holdout_is_seeded(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(4), 10)
    a, b = holdout_indices(labels, 3, seed=5), holdout_indices(labels, 3, seed=5)
    c = holdout_indices(labels, 3, seed=6)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    assert np.array_equal(np.sort(np.concatenate(a)), np.arange(40))


def test_a_holdout_as_large_as_a_class_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    src = tree(tmp_path / "src", {"n00000001": 7, "n00000002": 3})
    with pytest.raises(UserError, match="would leave none to train on in n00000002, which has 3"):
        prepare(src, tmp_path / "s", size=12, holdout=3, workers=1, progress=False)
    assert main(["prepare", str(src), str(tmp_path / "t"), "--size", "12", "--holdout", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--holdout: 3 images per class would leave none" in err and err.count("\n") == 1
    assert not (tmp_path / "t").exists()


def test_training_decides_on_the_holdout(tmp_path: Path) -> None:
    import json

    from alexnet.training.trainer import train
    from helpers import tiny_config

    src = tree(tmp_path / "src", {f"n0000000{i}": 12 for i in range(4)}, size=20)
    store = prepare(src, tmp_path / "s", size=20, holdout=2, workers=1, progress=False).out
    run = tmp_path / "run"
    train(tiny_config(store, "optim.batch_size=8"), run, progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (decided,) = [r for r in records if r.get("event") == "decision_split"]
    assert decided["split"] == "holdout" and decided["warning"] == ""
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert epochs[0]["val_split"] == "holdout" and epochs[0]["val_images"] == 8
