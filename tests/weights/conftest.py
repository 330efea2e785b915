"""Random-weight files in both published formats and the runs imported from them, made once per session.

Each file is full size (about 244 MB, as the real ones): torchvision's state dict from
``torchvision.models.alexnet()`` (He-scaled so its logits are of order 1), and an ONNX graph of
the BVLC layout written with ``onnx.helper`` (tests/helpers.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import bvlc_onnx, imagenet_store, torchvision_alexnet


@pytest.fixture(scope="session")
def published(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("published")


@pytest.fixture(scope="session")
def tv_model() -> torch.nn.Module:
    return torchvision_alexnet(seed=1)


@pytest.fixture(scope="session")
def tv_file(published: Path, tv_model: torch.nn.Module) -> Path:
    path = published / "alexnet-owt-7be5be79.pth"
    torch.save(tv_model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tv_run(published: Path, tv_file: Path) -> Path:
    from alexnet.weights import import_weights

    return import_weights("torchvision", tv_file, published / "tv_run")


@pytest.fixture(scope="session")
def bvlc_file(published: Path) -> Path:
    return bvlc_onnx(published / "bvlcalexnet-12.onnx", expose_logits=True)


@pytest.fixture(scope="session")
def bvlc_run(published: Path, bvlc_file: Path) -> Path:
    from alexnet.weights import import_weights

    return import_weights("onnx", bvlc_file, published / "bvlc_run")


@pytest.fixture(scope="session")
def imagenet(published: Path):
    """A store with the 1000 ILSVRC-2012 classes: 6 training and 4 validation images at 256x256."""
    return imagenet_store(published / "imagenet")
