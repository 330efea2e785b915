"""TrainedRun: one way to open a run, and one normalisation -- the training set's mean -- on every path.

eval, predict, features and report must feed the network the same input for the same
image, also when the image comes from a store other than the training store (whose own
statistics differ).  The expected input is computed by hand: the image minus the
*training* mean image, cropped at (S - c) // 2 (§2, §4.1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.data.prepare import prepare
from alexnet.data.store import Store
from alexnet.errors import UserError
from alexnet.inference.trained import TrainedRun
from helpers import make_store, tiny_run

CROP = 16  # helpers.TINY_SPEC's input size


class Conv1Inputs:
    """Records what the first convolution of any network sees (a global forward pre-hook)."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def __enter__(self) -> "Conv1Inputs":
        def hook(module, args):
            if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3:
                self.seen.append(args[0].detach().float().clone())

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    def rows(self) -> torch.Tensor:
        return torch.cat(self.seen)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A trained tiny run, and an image prepared into a store of its own (other statistics)."""
    root = tmp_path_factory.mktemp("trained")
    run, train_store = tiny_run(root)
    size = Store(train_store).image_size
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    classes = [w for w, _ in Store(train_store).classes]
    wnid = classes[1]
    src = root / "photos"
    for c in classes:  # bright training images: the store's own mean differs from the training mean
        (src / "train" / c).mkdir(parents=True)
        Image.fromarray(rng.integers(200, 256, (size, size, 3), dtype=np.uint8)).save(src / "train" / c / "t.png")
    (src / "val" / wnid).mkdir(parents=True)
    Image.fromarray(image).save(src / "val" / wnid / "val0.png")  # the image under test
    other = root / "other-store"
    prepare(src, other, size=size, workers=1, progress=False)
    mean = TrainedRun.open(run, device="cpu").mean_image
    top = (size - CROP) // 2
    expected = torch.from_numpy((image.astype(np.float32) - mean)[top:top + CROP, top:top + CROP]).permute(2, 0, 1)
    return run, Path(train_store), other, src / "val" / wnid / "val0.png", image, expected


def test_the_other_store_really_has_other_statistics(setup) -> None:
    run, train_store, other, *_ = setup
    assert np.abs(Store(other).stats().mean_image - Store(train_store).stats().mean_image).max() > 50


def test_eval_predict_features_report_see_the_same_normalised_input(setup, tmp_path: Path) -> None:
    run, train_store, other, photo, image, expected = setup
    inputs = {}
    with Conv1Inputs() as seen:
        assert main(["eval", str(run), "--data", str(other), "--patches", "centre", "--out", str(tmp_path / "e"),
                     "--device", "cpu", "--quiet"]) == 0
    inputs["eval"] = seen.rows()[0]
    with Conv1Inputs() as seen:
        assert main(["predict", str(run), str(photo), "--patches", "centre", "--device", "cpu"]) == 0
    inputs["predict"] = seen.rows()[0]
    with Conv1Inputs() as seen:
        assert main(["features", str(run), "--data", str(other), "--split", "val", "--out", str(tmp_path / "f"),
                     "--device", "cpu", "--quiet"]) == 0
    inputs["features"] = seen.rows()[0]
    with Conv1Inputs() as seen:
        assert main(["report", str(run), "--data", str(other), "--out", str(tmp_path / "r.html"), "--no-eval",
                     "--device", "cpu"]) == 0
    report_rows = seen.rows()
    # the report feeds val images (predictions) and train images (neighbours): ours is the only val image
    inputs["report"] = report_rows[[bool(torch.allclose(r, expected, atol=1e-4)) for r in report_rows].index(True)]
    for name, x in inputs.items():
        torch.testing.assert_close(x, expected, atol=1e-4, rtol=0, msg=f"{name} normalised differently")


def test_ten_patches_of_eval_and_predict_agree(setup, tmp_path: Path) -> None:
    run, _, other, photo, image, _ = setup
    with Conv1Inputs() as seen:
        main(["eval", str(run), "--data", str(other), "--out", str(tmp_path / "e"), "--device", "cpu", "--quiet"])
    via_eval = seen.rows()
    with Conv1Inputs() as seen:
        main(["predict", str(run), str(photo), "--device", "cpu"])
    via_predict = seen.rows()
    assert via_eval.shape == via_predict.shape == (10, 3, CROP, CROP)
    torch.testing.assert_close(via_eval, via_predict, atol=1e-4, rtol=0)


def test_mean_is_resampled_for_images_of_another_size(setup, tmp_path: Path) -> None:
    run, *_ = setup
    trained = TrainedRun.open(run, device="cpu")
    big = make_store(tmp_path / "big", size=2 * trained.image_size, classes=4)
    aug = trained.augmentation(big.image_size)
    assert aug.mean_image.shape == (big.image_size, big.image_size, 3)
    # a constant mean stays the same constant after resampling
    flat = np.full_like(trained.mean_image, 37.5)
    trained._mean = (flat, "test")
    np.testing.assert_allclose(trained.augmentation(big.image_size).mean_image, 37.5, atol=1e-4)


def test_open_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        TrainedRun.open(tmp_path / "nothing", device="cpu")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        TrainedRun.open(junk, device="cpu")
    torch.save({"kind": "something else"}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not an alexnet checkpoint"):
        TrainedRun.open(tmp_path / "foreign.pt", device="cpu")
