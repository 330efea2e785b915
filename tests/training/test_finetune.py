"""§6 pre-train then fine-tune: kept layers copied, fc8 (and an added conv6) initialised per §5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alexnet.inference.trained import read_checkpoint
from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.training.finetune import prepare_finetune
from alexnet.paper import ARCH, INIT, SIXTH

from helpers import make_store
from helpers import TINY_RUN, make_checkpoint

FAST = TINY_RUN


@pytest.fixture
def source(tmp_path: Path):
    """A 'pre-trained' checkpoint on 6 classes, and a store of 3 new classes."""
    old = make_store(tmp_path / "old", classes=6, seed=3)
    run = make_checkpoint(tmp_path / "pre", old, seed=5, fc_units=64)
    new = make_store(tmp_path / "new", classes=3, seed=4)
    return run, new


@pytest.mark.parametrize("add_conv6", [False, True])
def test_kept_layers_are_copied_and_new_ones_initialised(source, tmp_path: Path, add_conv6: bool) -> None:
    run, new = source
    src = read_checkpoint(run)["model"]
    trainer = prepare_finetune(run, new.path, tmp_path / "ft", overrides=FAST, add_conv6=add_conv6, progress=False)
    got = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    kept = [k for k in src if not k.startswith("fc8.")]
    for key in kept:
        assert torch.equal(got[key], src[key]), key
    assert got["fc8.weight"].shape == (3, 64) and src["fc8.weight"].shape == (6, 64)
    assert torch.all(got["fc8.bias"] == ARCH.out_bias_init)
    assert got["fc8.weight"].mean().abs() < 3 * INIT.weight_std / 192 ** 0.5 + 1e-3
    assert got["fc8.weight"].std().item() == pytest.approx(INIT.weight_std, rel=0.25)
    info = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    if add_conv6:
        assert "conv6" in trainer.spec.variants and info["new_layers"] == ["conv6", "fc8"]
        assert torch.all(got["conv6.bias"] == SIXTH.bias_init)
        assert got["conv6.weight"].std().item() == pytest.approx(INIT.weight_std, rel=0.1)
    else:
        assert info["new_layers"] == ["fc8"] and "conv6" not in trainer.spec.variants
    assert info["copied_layers"][:2] == ["conv1", "conv2"]
    saved = read_checkpoint(tmp_path / "ft")["model"]  # checkpoint written before the first step: resumable
    assert torch.equal(saved["conv1.weight"], src["conv1.weight"])
    state = trainer.fit() if add_conv6 else None
    if state is not None:
        assert state.done and not torch.equal(trainer.model.state_dict()["conv6.weight"], got["conv6.weight"])


def test_architecture_mismatch_names_the_layer(source, tmp_path: Path, capsys) -> None:
    run, new = source
    with pytest.raises(UserError, match="layer conv1 disagrees"):
        prepare_finetune(run, new.path, tmp_path / "a", overrides=FAST + ["model.width=0.25"], progress=False)
    rc = main(["finetune", str(run), "--data", str(new.path), "--out", str(tmp_path / "b"), "--quiet",
               *sum((["--set", s] for s in FAST + ["model.variants=no-conv3"]), [])])
    err = capsys.readouterr().err
    assert rc == 2 and "conv3" in err and "Traceback" not in err
