"""Export: the plain-op LRN equals ours, and ONNX / TorchScript files reproduce PyTorch's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.inference.export import PlainLRN, export, plain_model
from alexnet.net.lrn import LocalResponseNorm
from alexnet.net.model import build_model

from helpers import make_store
from helpers import make_checkpoint


@pytest.mark.parametrize("divided", [False, True])
@pytest.mark.parametrize("groups", [1, 2])
def test_plain_lrn_equals_the_custom_function(divided: bool, groups: int) -> None:
    lrn = LocalResponseNorm(alpha_divided_by_n=divided, groups=groups)
    x = torch.randn(3, 12, 5, 4, dtype=torch.float64) * 30
    torch.testing.assert_close(PlainLRN.like(lrn)(x), lrn(x), rtol=1e-12, atol=1e-12)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(PlainLRN.like(lrn)(channels_last), lrn(channels_last), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reading", ["paper", "code2012"])
def test_plain_model_equals_model(reading: str) -> None:
    torch.manual_seed(0)
    model = build_model(num_classes=5, input_size=16, width=0.125, fc_units=32, reading=reading).eval()
    plain = plain_model(model)
    assert not any(isinstance(m, LocalResponseNorm) for m in plain.modules())
    x = torch.randn(4, 3, 16, 16) * 50
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    store = make_store(tmp_path / "s")
    return make_checkpoint(tmp_path / "run", store)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_export_matches(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.pt"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max |difference|" in printed and "(ok)" in printed
    loaded = torch.jit.load(str(out))
    assert loaded(torch.zeros(7, 3, 16, 16)).shape == (7, 4)
    side = json.loads((tmp_path / "m.pt.json").read_text())
    assert side["input"]["shape"][1:] == [3, 16, 16] and len(side["classes"]) == 4
    assert (tmp_path / "m.pt.mean.npy").is_file()


def test_onnx_export_matches_under_onnxruntime(run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    report = export(run, tmp_path / "m.onnx", fmt="onnx", batch_size=3)
    assert report.checked_with == "onnxruntime" and report.ok and report.max_difference < 1e-4
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": torch.zeros(5, 3, 16, 16).numpy()})[0].shape == (5, 4)  # dynamic batch


def test_bad_export_requests(run: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="format: unknown value"):
        export(run, tmp_path / "m.x", fmt="tflite")
    with pytest.raises(UserError, match="is a directory"):
        export(run, tmp_path, fmt="torchscript")
    with pytest.raises(UserError, match="does not exist"):
        export(tmp_path / "nowhere", tmp_path / "m.pt", fmt="torchscript")
