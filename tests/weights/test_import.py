"""Importing published weights: the same outputs as torchvision's model and onnxruntime, the same preprocessing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from alexnet.data.images import load_image
from alexnet.inference.trained import TrainedRun
from alexnet.weights import import_weights
from helpers import CAFFE_BGR_MEAN, TORCHVISION_MEAN, TORCHVISION_STD, bvlc_onnx, smooth_images

ort = pytest.importorskip("onnxruntime")


def torchvision_inputs(images: np.ndarray) -> torch.Tensor:
    """torchvision's own evaluation transform on 256x256 images (Resize(256) is then the identity)."""
    tf = T.Compose([T.CenterCrop(224), T.ToTensor(), T.Normalize(TORCHVISION_MEAN, TORCHVISION_STD)])
    return torch.stack([tf(Image.fromarray(im)) for im in images])


def caffe_inputs(images: np.ndarray, crop: int) -> np.ndarray:
    """Caffe's transform written out by hand: RGB -> BGR, float, minus the BGR channel means, CHW, centre crop."""
    bgr = images[..., ::-1].astype(np.float32) - np.array(CAFFE_BGR_MEAN, np.float32)
    chw = bgr.transpose(0, 3, 1, 2)
    off = (images.shape[1] - crop) // 2
    return chw[:, :, off:off + crop, off:off + crop]


def onnxruntime_outputs(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fc8 logits, softmax) from onnxruntime, one image at a time (the graph declares batch 1)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runs = [session.run(["fc8_1", "prob_1"], {"data_0": x[i:i + 1]}) for i in range(len(x))]
    return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return smooth_images(3, 256, np.random.default_rng(7))


def test_torchvision_import_computes_what_torchvisions_model_computes(tv_run: Path, tv_model, images) -> None:
    run = TrainedRun.open(tv_run, device="cpu")
    assert run.spec.arch == "owt2014" and run.spec.num_classes == 1000
    same = torchvision_inputs(images)
    ours = run.inputs(images, "centre")  # our pipeline: the run's own normalisation
    assert (ours - same).abs().max().item() <= 1e-6
    with torch.no_grad():
        reference = tv_model(same)
        assert reference.std() > 0.5  # logits of order 1, so 1e-5 is a real bound
        assert (run.model(same) - reference).abs().max().item() <= 1e-5
        assert (run.model(ours) - reference).abs().max().item() <= 1e-5
    assert np.abs(run.probabilities(images) - torch.softmax(reference, 1).numpy()).max() <= 1e-6


def test_bvlc_import_computes_what_onnxruntime_computes(bvlc_run: Path, bvlc_file: Path, images) -> None:
    run = TrainedRun.open(bvlc_run, device="cpu")
    assert run.spec.arch == "caffe" and run.spec.input_size == 224  # the graph's declared input
    x = caffe_inputs(images, 224)
    assert np.array_equal(run.inputs(images, "centre").numpy(), x)
    logits, probs = onnxruntime_outputs(bvlc_file, x)
    with torch.no_grad():
        ours = run.model(torch.from_numpy(x)).numpy()
    assert logits.std() > 0.5
    assert np.abs(ours - logits).max() <= 1e-5
    assert np.abs(run.probabilities(images) - probs).max() <= 1e-6


@pytest.mark.parametrize("input_size,pool1", [(224, "ceil"), (227, "none")])
def test_other_roundings_and_caffes_227_input(tmp_path: Path, input_size: int, pool1: str) -> None:
    """ceil_mode instead of pads; a graph declaring Caffe's own 227 input (conv1 55, no rounding needed)."""
    path = bvlc_onnx(tmp_path / "g.onnx", input_size=input_size, pool1=pool1, seed=3, expose_logits=True)
    run = TrainedRun.open(import_weights("onnx", path, tmp_path / "run"), device="cpu")
    assert run.spec.input_size == input_size
    assert run.source["read"]["conv1_output"] == (54 if input_size == 224 else 55)
    images = smooth_images(2, 256, np.random.default_rng(3))
    x = caffe_inputs(images, input_size)
    logits, _ = onnxruntime_outputs(path, x)
    with torch.no_grad():
        assert np.abs(run.model(torch.from_numpy(x)).numpy() - logits).max() <= 1e-5


def test_decoding_a_photo_matches_torchvisions_resize_and_centre_crop(tv_run: Path, tmp_path: Path) -> None:
    """A 333x500 image through predict's decoder and the run's normalisation vs Resize(256)+CenterCrop(224)."""
    photo = Image.fromarray(smooth_images(1, 500, np.random.default_rng(11), height=333)[0])
    photo.save(tmp_path / "photo.png")
    run = TrainedRun.open(tv_run, device="cpu")
    decoded, _ = load_image(tmp_path / "photo.png", run.image_size)
    ours = run.inputs(decoded[None], "centre")[0]
    reference = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                           T.Normalize(TORCHVISION_MEAN, TORCHVISION_STD)])(Image.open(tmp_path / "photo.png"))
    grey_levels = (ours - reference).abs() * torch.tensor(TORCHVISION_STD)[:, None, None] * 255.0
    assert grey_levels.max().item() <= 1.0 + 1e-3
    assert grey_levels.mean().item() < 0.5


def test_the_command_offers_the_library_formats() -> None:
    from alexnet import weights
    from alexnet.commands import import_weights

    assert import_weights.FORMATS == weights.FORMATS == ("torchvision", "onnx")


def test_the_run_records_source_preprocessing_and_the_1000_classes(tv_run: Path, tv_file: Path,
                                                                   bvlc_run: Path) -> None:
    run = TrainedRun.open(tv_run, device="cpu")
    source = run.source
    assert source["format"] == "torchvision" and source["file"] == tv_file.name
    assert source["sha256"] == hashlib.sha256(tv_file.read_bytes()).hexdigest()
    assert source["sha256_matches_published"] is False  # random weights are not the published file
    assert (source["published_accuracy"]["top1"], source["published_accuracy"]["top5"]) == (56.522, 79.066)
    assert run.image_size == 256 and run.data.mean == "none"
    assert run.norm.mean == TORCHVISION_MEAN and run.norm.std == TORCHVISION_STD and run.norm.unit == 255.0
    assert len(run.classes) == 1000 and run.classes[0] == ("n01440764", "tench, Tinca tinca")
    assert run.classes[999][0] == "n15075141" and [w for w, _ in run.classes] == sorted(w for w, _ in run.classes)
    bvlc = TrainedRun.open(bvlc_run, device="cpu")
    assert bvlc.norm.channels == "BGR" and bvlc.norm.mean == CAFFE_BGR_MEAN and bvlc.norm.std is None
    assert bvlc.source["format"] == "onnx" and bvlc.source["read"]["input"] == {"name": "data_0", "size": 224}
    assert bvlc.classes == run.classes
    for folder in (tv_run, bvlc_run):
        assert (folder / "run.json").is_file() and (folder / "config.toml").is_file()
        assert 'mean = "none"' in (folder / "config.toml").read_text()
