"""`alexnet features`: fc7 activity memory-mapped, resumable, fingerprinted (§6.1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.inference.trained import TrainedRun, read_checkpoint
from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.probes.features import FeatureSet, extract_features, rows_done, weights_fingerprint
from helpers import tiny_run

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_run(tmp_path_factory.mktemp("features"))


def test_features_match_model_and_sidecar(tiny, tmp_path: Path) -> None:
    run, store = tiny
    fs = extract_features(run, store, tmp_path / "f", split="val", batch_size=7)
    model = TrainedRun.open(run, device='cpu').model
    assert fs.features.shape == (40, 32) and fs.features.dtype == np.float32
    assert isinstance(np.load(tmp_path / "f" / "features.npy", mmap_mode="r"), np.memmap)
    assert fs.meta["complete"] and fs.meta["checkpoint_sha256"] == weights_fingerprint(model)
    assert fs.meta["split"] == "val" and len(fs.meta["store_sha256"]) == 64
    assert (fs.index == np.arange(40)).all() and len(fs.paths()) == 40
    # row i is the centre-patch fc7 activity of image i, in eval mode
    from alexnet.config import config_from_dict
    from alexnet.data.batches import Augmentation
    from alexnet.data.store import Store

    s = Store(store)
    cfg = config_from_dict(read_checkpoint(run)["config"])
    aug = Augmentation.from_config(cfg.data, s.stats(), model.spec.reading)
    seen = {}  # the reference: what fc7's ReLU outputs inside an ordinary forward pass, not model.features
    hook = model.relu7.register_forward_hook(lambda m, i, o: seen.__setitem__("fc7", o.detach().clone()))
    with torch.no_grad():
        model.eval()(aug.evaluate(s.split("val").read(np.arange(5)), "centre"))
    hook.remove()
    assert fs.dim == model.fc7.out_features
    np.testing.assert_allclose(fs.features[:5], seen["fc7"].numpy(), rtol=1e-5, atol=1e-6)
    assert (fs.labels == s.split("val").labels).all()


def test_resume_after_interruption_gives_same_rows(tiny, tmp_path: Path) -> None:
    run, store = tiny
    whole = extract_features(run, store, tmp_path / "whole", split="val", batch_size=8)
    part = extract_features(run, store, tmp_path / "part", split="val", batch_size=8, max_rows=16)
    assert rows_done(tmp_path / "part") == 16 and not part.meta.get("complete")
    with pytest.raises(UserError, match="incomplete"):
        FeatureSet.open(tmp_path / "part")
    done = extract_features(run, store, tmp_path / "part", split="val", batch_size=8)
    assert done.meta["complete"] and rows_done(tmp_path / "part") == 40
    np.testing.assert_array_equal(np.asarray(done.features), np.asarray(whole.features))


def test_other_checkpoint_is_refused(tiny, tmp_path: Path) -> None:
    run, store = tiny
    other, _ = tiny_run(tmp_path, seed=1)
    extract_features(run, store, tmp_path / "f", split="val")
    with pytest.raises(UserError, match="another checkpoint"):
        extract_features(other, store, tmp_path / "f", split="val")


def test_cli_features(tiny, tmp_path: Path, capsys) -> None:
    run, store = tiny
    assert main(["features", str(run), "--data", str(store), "--split", "train", "--out", str(tmp_path / "f"), "--quiet"]) == 0
    assert "96 x 32 fc7 features" in capsys.readouterr().out
    meta = json.loads((tmp_path / "f" / "features.json").read_text())
    assert meta["count"] == 96 and meta["layer"] == "fc7"
    assert main(["features", str(run), "--data", str(store), "--split", "nope", "--out", str(tmp_path / "g")]) == 2
    assert "no split 'nope'" in capsys.readouterr().err
