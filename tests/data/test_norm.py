"""The pipeline's last step (InputNorm): identity for runs trained here, torchvision's and Caffe's for imported ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import transforms as T

from alexnet.config import DataConfig
from alexnet.data.batches import Augmentation
from alexnet.data.norm import InputNorm
from alexnet.data.transforms import draw_augmentation, eval_transform, train_transform
from alexnet.errors import UserError

TV_MEAN, TV_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's ImageNet normalisation


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)


def test_the_default_changes_nothing_bit_for_bit(images: np.ndarray) -> None:
    norm = InputNorm.from_config(DataConfig())
    assert norm.identity
    mean = images.mean(0).astype(np.float32)
    for patches in ("centre", "ten"):
        plain = eval_transform(images, crop=32, mean_image=mean, patches=patches)
        assert torch.equal(eval_transform(images, crop=32, mean_image=mean, patches=patches, norm=norm), plain)
    g = torch.Generator().manual_seed(0)
    draws = draw_augmentation(3, 40, 40, 32, g)
    kw = dict(crop=32, mean_image=mean, eigenvalues=np.ones(3), eigenvectors=np.eye(3), draws=draws)
    assert torch.equal(train_transform(images, **kw), train_transform(images, **kw, norm=norm))
    assert Augmentation.from_config(DataConfig(), _Stats(mean), "paper").norm is None


class _Stats:
    def __init__(self, mean: np.ndarray) -> None:
        self.mean_image, self.eigenvalues, self.eigenvectors = mean, np.ones(3), np.eye(3)


def test_torchvision_normalisation_equals_totensor_and_normalize(images: np.ndarray) -> None:
    norm = InputNorm("RGB", 255.0, TV_MEAN, TV_STD)
    ours = eval_transform(images, crop=32, mean_image=None, mean_mode="none", norm=norm)
    reference = T.Compose([T.ToTensor(), T.CenterCrop(32), T.Normalize(TV_MEAN, TV_STD)])
    expected = torch.stack([reference(im) for im in images])
    assert (ours - expected).abs().max().item() <= 1e-6


def test_caffe_normalisation_is_bgr_minus_the_channel_means(images: np.ndarray) -> None:
    norm = InputNorm("BGR", 1.0, (104.0, 117.0, 123.0))
    ours = eval_transform(images, crop=32, mean_image=None, mean_mode="none", patches="ten", norm=norm)
    centre = images[:, 4:36, 4:36, ::-1].astype(np.float32) - np.array([104.0, 117.0, 123.0], np.float32)
    assert np.array_equal(ours[:, 4].numpy(), centre.transpose(0, 3, 1, 2))  # view 4: the centre patch
    mirrored = images[:, 4:36, 4:36][:, :, ::-1, ::-1].astype(np.float32) - np.array([104, 117, 123], np.float32)
    assert np.array_equal(ours[:, 9].numpy(), mirrored.transpose(0, 3, 1, 2))


def test_training_with_a_norm_applies_it_after_the_crop_and_lighting(images: np.ndarray) -> None:
    norm = InputNorm("BGR", 255.0, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    g = torch.Generator().manual_seed(1)
    draws = draw_augmentation(3, 40, 40, 32, g)
    kw = dict(crop=32, mean_image=np.zeros((40, 40, 3), np.float32), eigenvalues=np.ones(3),
              eigenvectors=np.eye(3), draws=draws, mean_mode="none")
    plain = train_transform(images, **kw)
    normed = train_transform(images, **kw, norm=norm)
    assert torch.allclose(normed, (plain.flip(1) / 255.0 - 0.5) / 0.25, atol=1e-5)


@pytest.mark.parametrize("kwargs,key", [
    (dict(channels="RBG"), "data.channels"),
    (dict(unit=0.0), "data.input_unit"),
    (dict(mean=(1.0, 2.0)), "data.input_mean"),
    (dict(std=(1.0, 0.0, 1.0)), "data.input_std"),
    (dict(std=("a", 1, 1)), "data.input_std"),
])
def test_bad_values_name_their_key(kwargs: dict, key: str) -> None:
    with pytest.raises(UserError) as err:
        InputNorm(**kwargs)
    assert err.value.key == key
