"""§4.1 pipelines: uint8 store batches -> normalised float patches, for training and for testing.

:func:`train_transform` crops and reflects, adds PCA lighting and subtracts the mean
(in the order and units that :mod:`alexnet.data.augment` documents, for both readings);
:func:`eval_transform` cuts the centre patch or the ten test patches and subtracts the
mean.  Both end with an optional :class:`alexnet.data.norm.InputNorm` (channel order,
unit, per-channel mean and std: what networks trained elsewhere expect); with
``mean_mode="none"`` no training mean is subtracted before it.  All randomness is drawn beforehand into :class:`Draws` from an explicit
``torch.Generator`` (:func:`draw_augmentation`), so distributed ranks can share one
global batch's draws.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from alexnet.data.augment import (
    MEAN_CROPS,
    MEAN_MODES,
    PATCHES,
    PIXEL_UNIT,
    Crops,
    apply_crops,
    centre_crop,
    check_images,
    check_reading,
    draw_alphas,
    draw_crops,
    float_out,
    mean_chw,
    pca_offsets,
    subtract_matching_mean_,
    ten_crop,
    ten_crop_offsets,
    to_nchw,
)
from alexnet.data.norm import InputNorm
from alexnet.errors import UserError, choice_error
from alexnet.paper import DATA


class Draws(NamedTuple):
    """All random numbers of one training batch: crops and reflections, and lighting alphas (or None)."""

    crops: Crops
    alphas: Tensor | None

    def slice(self, start: int, stop: int) -> "Draws":
        """The draws of images ``start:stop`` (one rank's share of a global batch)."""
        crops = Crops(*(t[start:stop] for t in self.crops))
        return Draws(crops, None if self.alphas is None else self.alphas[start:stop])


def draw_augmentation(
    batch: int,
    height: int,
    width: int,
    crop: int,
    generator: torch.Generator,
    *,
    pca: bool = True,
    pca_std: float = DATA.pca_std,
    crop_chunk: int = 1,
) -> Draws:
    """Draw one batch's crops and flips, then its lighting alphas, from ``generator`` (§4.1)."""
    crops = draw_crops(batch, height, width, crop, generator, chunk=crop_chunk)
    alphas = draw_alphas(batch, generator, std=pca_std) if pca else None
    return Draws(crops, alphas)


def train_transform(
    batch: object,
    *,
    crop: int,
    mean_image: object,
    eigenvalues: object,
    eigenvectors: object,
    generator: torch.Generator | None = None,
    mean_mode: str = "image",
    pca: bool = True,
    reading: str = "paper",
    pca_std: float = DATA.pca_std,
    mean_crop: str | None = None,
    crop_chunk: int | None = None,
    unit: float = PIXEL_UNIT,
    out: Tensor | None = None,
    draws: "Draws | None" = None,
    norm: InputNorm | None = None,
) -> Tensor:
    """§4.1 training pipeline: uint8 (B, S, S, 3) or (B, 3, S, S) -> float32 (B, 3, crop, crop).

    ``paper``: random crop + reflection, PCA lighting (``pca``), subtraction of
    the mean (``mean_mode="image"``: the mean image cropped and reflected like
    each image; ``"channel"``: per-channel means).  ``code2012``: crop +
    reflection shared by chunks of ``CODE2012.crop_shared_chunk`` images, the
    mean image's centre patch subtracted, colour noise with sqrt(eigenvalues),
    then the 1/1.1 rescale (see the module docstring).  ``mean_crop``
    (``"match"``/``"centre"``) and ``crop_chunk`` override the reading's choice.
    Output is in 0..255 units, zero-mean.  ``out``: an optional float32 buffer to
    write into (the caller must not still be using its previous contents).
    ``draws``: the batch's random draws made beforehand with :func:`draw_augmentation`
    (then ``generator`` is not used) -- how distributed ranks share one global batch's draws.
    ``norm``: the last step (:class:`~alexnet.data.norm.InputNorm`); ``mean_mode="none"``
    subtracts no mean before it.
    """
    switches = check_reading(reading)
    if mean_mode not in MEAN_MODES:
        raise choice_error("mean_mode", mean_mode, MEAN_MODES)
    if mean_crop is None:
        mean_crop = "match" if switches.mean_patch_matches_crop else "centre"
    if mean_crop not in MEAN_CROPS:
        raise choice_error("mean_crop", mean_crop, MEAN_CROPS)
    if crop_chunk is None:
        crop_chunk = switches.crop_shared_chunk
    x = to_nchw(batch)
    height, width = check_images(x, crop, "batch")
    b = x.shape[0]
    m = mean_chw(mean_image, x.device)
    if (m.shape[1], m.shape[2]) != (height, width):
        raise UserError(f"mean_image is {m.shape[1]}x{m.shape[2]} but the images are {height}x{width}")
    if draws is None:
        if generator is None:
            raise ValueError("train_transform needs a generator or precomputed draws")
        draws = draw_augmentation(b, height, width, crop, generator, pca=pca, pca_std=pca_std, crop_chunk=crop_chunk)
    elif len(draws.crops.top) != b:
        raise ValueError(f"draws are for {len(draws.crops.top)} images, the batch has {b}")
    crops = Crops(*(t.to(x.device) for t in draws.crops))
    result = float_out(apply_crops(x, crops, crop), out)  # (B, 3, c, c) float32, 0..255
    # Per-image constant RGB shift: lighting offset minus the channel means (if any).
    shift = torch.zeros((b, 3), dtype=torch.float32, device=x.device)
    if pca:
        shift += pca_offsets(draws.alphas.to(x.device), eigenvalues, eigenvectors, reading=reading, unit=unit)
    if mean_mode == "channel":
        shift -= m.mean(dim=(1, 2))
    elif mean_mode == "none":
        pass
    elif mean_crop == "centre":
        result.sub_(centre_crop(m[None], crop)[0])
    else:
        subtract_matching_mean_(result, m, crops, crop)
    if pca or mean_mode == "channel":
        result.add_(shift[:, :, None, None])
    if pca and switches.colour_noise_rescale != 1.0:
        result.mul_(switches.colour_noise_rescale)  # after mean subtraction and noise, as the 2012 code
    return result if norm is None else norm.apply_(result)


def eval_transform(
    batch: object,
    *,
    crop: int,
    mean_image: object,
    mean_mode: str = "image",
    patches: str = "centre",
    reading: str = "paper",
    norm: InputNorm | None = None,
) -> Tensor:
    """§4.1 test patches, mean-subtracted float32.

    ``patches="centre"``: (B, 3, crop, crop); ``"ten"``: (B, 10, 3, crop, crop) in
    :func:`ten_crop` order.  With ``mean_mode="image"`` the ``paper`` reading
    subtracts the same patch (and reflection) of the mean image; ``code2012``
    subtracts the mean image's centre patch from every view, as its multiview
    test did.  No lighting and no rescale at test time (either reading).  ``mean_mode="none"``
    subtracts no mean (``mean_image`` may then be None); ``norm`` is applied last.
    """
    switches = check_reading(reading)
    if patches not in PATCHES:
        raise choice_error("patches", patches, PATCHES)
    if mean_mode not in MEAN_MODES:
        raise choice_error("mean_mode", mean_mode, MEAN_MODES)
    x = to_nchw(batch)
    height, width = check_images(x, crop, "batch")
    m = None if mean_mode == "none" else mean_chw(mean_image, x.device)
    if m is not None and (m.shape[1], m.shape[2]) != (height, width):
        raise UserError(f"mean_image is {m.shape[1]}x{m.shape[2]} but the images are {height}x{width}")
    if m is None:
        mean = None
    elif mean_mode == "channel":
        mean = m.mean(dim=(1, 2), keepdim=True)
    elif not switches.mean_patch_matches_crop or patches == "centre":
        mean = centre_crop(m[None], crop)[0]
    else:
        mean = ten_crop(m[None], crop)[0]  # (10, 3, c, c): each view's own patch of the mean
    if patches == "centre":
        out = float_out(centre_crop(x, crop), None)
    else:
        out = torch.empty((x.shape[0], 10, 3, crop, crop), dtype=torch.float32, device=x.device)
        for k, (t, l) in enumerate(ten_crop_offsets(height, width, crop)):  # ten_crop order, written in place
            out[:, k].copy_(x[:, :, t : t + crop, l : l + crop])
            out[:, k + 5].copy_(out[:, k].flip(-1))
    if mean is not None:
        out.sub_(mean)
    return out if norm is None else norm.apply_(out)
