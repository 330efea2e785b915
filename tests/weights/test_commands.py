"""Every command on an imported run: eval, predict, features, neighbours, kernels, report, export, finetune."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from alexnet.cli import main
from alexnet.data.shards import write_store
from helpers import CAFFE_BGR_MEAN, TORCHVISION_MEAN, TORCHVISION_STD, smooth_images

ort = pytest.importorskip("onnxruntime")


def torchvision_inputs(images: np.ndarray) -> torch.Tensor:
    tf = T.Compose([T.CenterCrop(224), T.ToTensor(), T.Normalize(TORCHVISION_MEAN, TORCHVISION_STD)])
    return torch.stack([tf(Image.fromarray(im)) for im in images])


def caffe_inputs(images: np.ndarray, crop: int = 224) -> np.ndarray:
    bgr = images[..., ::-1].astype(np.float32) - np.array(CAFFE_BGR_MEAN, np.float32)
    off = (images.shape[1] - crop) // 2
    return np.ascontiguousarray(bgr.transpose(0, 3, 1, 2)[:, :, off:off + crop, off:off + crop])


def run_graph(path: Path, x: np.ndarray, output: str) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    fixed = session.get_inputs()[0].shape[0] == 1
    if fixed:
        return np.concatenate([session.run([output], {name: x[i:i + 1]})[0] for i in range(len(x))])
    return session.run([output], {name: x})[0]


def test_eval_gives_torchvisions_and_onnxruntimes_probabilities(tv_run, tv_model, bvlc_run, bvlc_file, imagenet,
                                                                tmp_path: Path, capsys) -> None:
    val = imagenet.split("val").read(np.arange(4))
    for run, name in ((tv_run, "tv"), (bvlc_run, "bvlc")):
        out = tmp_path / name
        assert main(["eval", str(run), "--data", str(imagenet.path), "--patches", "both", "--out", str(out),
                     "--batch-size", "4", "--quiet"]) == 0
        probs = np.load(out / "probs_centre.npy")
        if name == "tv":
            with torch.no_grad():
                expected = torch.softmax(tv_model(torchvision_inputs(val)), 1).numpy()
        else:
            expected = run_graph(bvlc_file, caffe_inputs(val), "prob_1")
        assert np.abs(probs - expected).max() <= 1e-6
        assert np.load(out / "probs_ten.npy").shape == (4, 1000)
        summary = json.loads((out / "eval.json").read_text())
        assert "no training mean image" in summary["mean"]
        assert summary["weights"]["top1"] == (56.522 if name == "tv" else 57.1)
    assert "published" in capsys.readouterr().out


def test_predict_labels_photos_with_imagenet_names(tv_run, tmp_path: Path, capsys) -> None:
    paths = []
    for i, im in enumerate(smooth_images(2, 320, np.random.default_rng(5), height=240)):
        paths.append(tmp_path / f"photo{i}.png")
        Image.fromarray(im).save(paths[-1])
    assert main(["predict", str(tv_run), *map(str, paths), "--json", "--patches", "ten"]) == 0
    result = json.loads(capsys.readouterr().out)
    top = result["predictions"][0]["top"]
    assert len(top) == 5 and all(t["wnid"].startswith("n") and t["name"] for t in top)
    assert "x / 255" in result["mean"]


def test_features_and_neighbours(tv_run, tv_model, imagenet, tmp_path: Path, capsys) -> None:
    feats = tmp_path / "feats"
    assert main(["features", str(tv_run), "--data", str(imagenet.path), "--split", "val", "--out", str(feats),
                 "--quiet"]) == 0
    got = np.load(feats / "features.npy")
    with torch.no_grad():  # torchvision's classifier up to fc7's ReLU, on torchvision's own inputs
        x = torch.flatten(tv_model.avgpool(tv_model.features(torchvision_inputs(imagenet.split("val").read(
            np.arange(4))))), 1)
        expected = tv_model.classifier[:6](x).numpy()
    assert got.shape == (4, 4096) and np.abs(got - expected).max() <= 1e-5
    assert main(["neighbours", str(feats), "--queries", "0,1", "-k", "2"]) == 0
    hits = json.loads((feats / "neighbours.json").read_text())["results"]
    assert [h["neighbours"][0] for h in hits] == [0, 1]  # each image is its own nearest neighbour
    capsys.readouterr()


def test_kernels_show_each_networks_columns(tv_run, bvlc_run, tmp_path: Path) -> None:
    for run, kernels, columns in ((tv_run, 64, 1), (bvlc_run, 96, 2)):
        png = tmp_path / f"{run.name}.png"
        assert main(["kernels", str(run), "--out", str(png)]) == 0
        summary = json.loads(png.with_suffix(".json").read_text())
        assert len(summary["per_column"]) == columns
        assert summary["per_column"][-1]["kernels"][1] == kernels


def test_report_names_the_architecture_and_the_weights(tv_run, imagenet, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert main(["report", str(tv_run), "--data", str(imagenet.path), "--out", str(page), "--pool", "6"]) == 0
    text = page.read_text()
    assert "owt2014" in text and "alexnet-owt-7be5be79.pth" in text and "x / 255" in text
    assert 'class="error"' not in text and text.count("<img") >= 3


def test_export_round_trips_the_bvlc_graph(bvlc_run, bvlc_file, imagenet, tmp_path: Path) -> None:
    out = tmp_path / "exported.onnx"
    assert main(["export", str(bvlc_run), "--format", "onnx", "--out", str(out), "--batch-size", "2"]) == 0
    sidecar = json.loads((tmp_path / "exported.onnx.json").read_text())
    assert sidecar["input"]["normalisation"]["channels"] == "BGR" and sidecar["weights"]["format"] == "onnx"
    assert not (tmp_path / "exported.onnx.mean.npy").exists()
    x = caffe_inputs(imagenet.split("val").read(np.arange(2)))
    assert np.abs(run_graph(out, x, "logits") - run_graph(bvlc_file, x, "fc8_1")).max() <= 1e-5


def test_finetune_keeps_the_architecture_and_the_normalisation(tv_run, tv_model, tmp_path: Path, capsys) -> None:
    from alexnet.inference.trained import TrainedRun

    rng = np.random.default_rng(2)
    store = write_store(tmp_path / "two", {"train": (smooth_images(8, 240, rng), np.arange(8) % 2),
                                           "val": (smooth_images(4, 240, rng), np.arange(4) % 2)},
                        [("n00000001", "left"), ("n00000002", "right")])
    out = tmp_path / "ft"
    settings = ["optim.batch_size=4", "data.workers=0", "schedule.max_epochs=1", "run.max_steps=1",
                "run.device=cpu", "run.health_window=0", "optim.lr=1e-12"]
    argv = ["finetune", str(tv_run), "--data", str(store.path), "--out", str(out), "--quiet"]
    assert main([*argv, *[a for s in settings for a in ("--set", s)]]) == 0
    info = json.loads((out / "finetune.json").read_text())
    assert info["copied_layers"] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    assert info["new_layers"] == ["fc8"] and "x / 255" in info["source_inputs"]
    new = TrainedRun.open(out, device="cpu")
    assert new.spec.arch == "owt2014" and new.spec.num_classes == 2 and new.data.mean == "none"
    assert new.norm.mean == TORCHVISION_MEAN and new.norm.std == TORCHVISION_STD and new.norm.unit == 255.0
    with torch.no_grad():  # rate ~0: the kept layers are torchvision's, and it sees inputs as torchvision did
        images = store.split("val").read(np.arange(4))
        assert np.abs(new.features(images) - tv_model.classifier[:6](torch.flatten(tv_model.avgpool(
            tv_model.features(torchvision_inputs(images))), 1)).numpy()).max() <= 1e-5
    capsys.readouterr()
