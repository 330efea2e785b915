"""Bad weight files: one line naming the first mismatch, exit status 2, no RUN folder left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from alexnet.cli import main
from helpers import bvlc_onnx

EXPECTED = ("features.0", "features.3", "features.6", "features.8", "features.10", "classifier.1", "classifier.4",
            "classifier.6")  # torchvision's AlexNet, independently of the importer's table


def small_state_dict(**shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """torchvision's AlexNet keys with small tensors (the key check comes before the shapes); fc8 (10, 4096)."""
    sd = {f"{m}.{p}": torch.zeros(1) for m in EXPECTED for p in ("weight", "bias")}
    sd["classifier.6.weight"] = torch.zeros(10, 4096)
    sd.update({k: torch.zeros(v) for k, v in shapes.items()})
    return sd


def refused(fmt: str, file: Path, tmp_path: Path, capsys) -> str:
    """Run the import, check the refusal's form and that nothing is left; return the error line."""
    out = tmp_path / "runs" / "imported"
    code = main(["import", fmt, str(file), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("alexnet import: error:"), err
    assert "Traceback" not in err
    assert not out.exists()
    leftovers = list(out.parent.iterdir()) if out.parent.exists() else []
    assert not leftovers, leftovers
    return err


def test_a_state_dict_of_another_architecture(tmp_path: Path, capsys) -> None:
    path = tmp_path / "squeezenet.pth"
    torch.save(torchvision.models.squeezenet1_1().state_dict(), path)
    err = refused("torchvision", path, tmp_path, capsys)
    assert "is not torchvision's AlexNet: it lacks features.3.weight (conv2's weight)" in err


@pytest.mark.parametrize("change,message", [
    ("missing", "it lacks classifier.4.bias (fc7's bias)"),
    ("extra", "it has features.1.weight, which torchvision's AlexNet does not"),
    ("shape", "features.0.weight (conv1) has shape (96, 3, 11, 11), torchvision's AlexNet (64, 3, 11, 11)"),
])
def test_missing_extra_or_misshapen_keys(tmp_path: Path, capsys, change: str, message: str) -> None:
    sd = small_state_dict(**({"features.0.weight": (96, 3, 11, 11)} if change == "shape" else {}))
    if change == "missing":
        del sd["classifier.4.bias"]
    if change == "extra":
        sd["features.1.weight"] = torch.zeros(1)
    path = tmp_path / "sd.pth"
    torch.save(sd, path)
    assert message in refused("torchvision", path, tmp_path, capsys)


def test_truncated_and_foreign_files(tmp_path: Path, capsys, tv_file: Path, tv_run: Path) -> None:
    truncated = tmp_path / "alexnet-owt-7be5be79.pth"
    with open(tv_file, "rb") as f:
        truncated.write_bytes(f.read(5_000_000))
    assert "is not a readable PyTorch state dict" in refused("torchvision", truncated, tmp_path, capsys)
    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    assert "is not a readable PyTorch state dict" in refused("torchvision", text, tmp_path, capsys)
    assert "does not exist" in refused("torchvision", tmp_path / "absent.pth", tmp_path, capsys)
    assert "already an alexnet checkpoint" in refused("torchvision", tv_run / "checkpoints" / "last.pt", tmp_path,
                                                       capsys)
    assert "is not a readable ONNX model" in refused("onnx", truncated, tmp_path, capsys)  # a .pth is no graph


def test_a_truncated_onnx_file(tmp_path: Path, capsys, bvlc_file: Path) -> None:
    truncated = tmp_path / "bvlcalexnet-12.onnx"
    with open(bvlc_file, "rb") as f:
        truncated.write_bytes(f.read(bvlc_file.stat().st_size // 2))
    assert "is not a readable ONNX model" in refused("onnx", truncated, tmp_path, capsys)


@pytest.mark.parametrize("kwargs,message", [
    (dict(drop=("norm1_1",)), "node 3 'pool1_1' (MaxPool) is MaxPool where BVLC AlexNet has LRN (lrn1)"),
    (dict(change={"conv2_1": {"group": 1}}), "node 'conv2_1' (Conv) (conv2) has group 1; BVLC AlexNet has 2"),
    (dict(pool1="none"), "pools 54x54 to 26x26 (pads [0, 0, 0, 0], ceil_mode 0); BVLC AlexNet to 27x27"),
    (dict(change={"norm1_1": {"bias": 2.0}}), "'norm1_1' (LRN) (lrn1) has bias 2.0; BVLC AlexNet has 1.0"),
    (dict(change={"conv1_1": {"pads": [2, 2, 2, 2]}}), "(conv1) has pads (2, 2, 2, 2); BVLC AlexNet has (0, 0, 0, 0)"),
    (dict(drop=("conv5_1", "conv5_2")), "node 13 'pool5_1' (MaxPool) is MaxPool where BVLC AlexNet has Conv (conv5)"),
])
def test_an_onnx_graph_of_another_layout(tmp_path: Path, capsys, kwargs: dict, message: str) -> None:
    path = bvlc_onnx(tmp_path / "other.onnx", small_fc=True, **kwargs)
    err = refused("onnx", path, tmp_path, capsys)
    assert message in err, err


def test_an_onnx_graph_of_another_network(tmp_path: Path, capsys) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(torch.zeros(8, 3, 3, 3).numpy(), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="stem", kernel_shape=[3, 3]),
         helper.make_node("Relu", ["c"], ["y"], name="act")],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)]), str(path))
    err = refused("onnx", path, tmp_path, capsys)
    assert "node 'stem' (Conv) (conv1) has weights of shape (8, 3, 3, 3); BVLC AlexNet has (96, 3, 11, 11)" in err


def test_an_existing_run_is_not_overwritten(tmp_path: Path, capsys, tv_file: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["import", "torchvision", str(tv_file), "--out", str(out)]) == 2
    assert "--out: " in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
