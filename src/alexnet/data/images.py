"""Decode one source image into the paper's 256x256 RGB patch (§2), fast.

§2: "Given a rectangular image, we first rescaled the image such that the shorter
side was of length 256, and then cropped out the central 256x256 patch."

What :func:`load_image` does, in order:

1. open by *content* (a PNG or GIF named ``.JPEG`` is decoded and noted, not rejected);
   reject empty files, non-images, unreadable files and decompression bombs
   (more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``);
2. for JPEGs, ``Image.draft('RGB', (S, S))``: libjpeg-turbo decodes at the smallest
   DCT scale 1/1, 1/2, 1/4 or 1/8 whose shorter side is still >= S, so the decode
   never throws away resolution the final patch needs;
3. apply the EXIF orientation (``ImageOps.exif_transpose``);
4. normalise the mode to L or RGB: CMYK -> RGB, palette / alpha -> RGB composited
   over white, 16-bit (I;16, I) -> 8 bit by /257, 1-bit -> L;
5. rescale so the shorter side is S (longer side ``int(S * long / short)``, computed
   from the full-resolution size) with an antialiased bilinear filter, and crop the
   central S x S patch at ``round((W - S) / 2)`` -- exactly torchvision's
   ``Resize(S) + CenterCrop(S)`` conventions;
6. greyscale images are resampled as one channel and then replicated to RGB.

Resampling filter: antialiased bilinear, i.e. PIL's ``Image.BILINEAR`` (whose
support widens with the reduction factor) as implemented by torch's uint8
``interpolate(mode='bilinear', antialias=True)`` kernel, which matches PIL's output
to +-1 grey level at roughly 3x its speed.  It is also torchvision's default
``Resize`` filter, so models evaluated through torchvision transforms see the same
pixels.  After the DCT reduction the remaining reduction factor is below 2, where
the triangle filter's 2-4 taps leave no visible aliasing; Lanczos would cost about
twice as much for differences of about one grey level.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

JPEG_SUFFIXES = (".jpeg", ".jpg", ".jpe", ".jfif")
#: PIL's default limit on one image's pixels: larger images are refused as decompression bombs
#: (``--max-image-pixels`` of prepare and predict raises it; 0 removes it).
DEFAULT_MAX_PIXELS = 89_478_485


@contextlib.contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Decode with at most ``max_pixels`` pixels per image (0: no limit) in this process, then restore."""
    if max_pixels < 0:
        from alexnet.errors import UserError

        raise UserError(f"must be 0 (no limit) or a positive number of pixels, got {max_pixels}",
                        key="max_image_pixels")
    before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, (max_pixels or None)
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


class ImageRejected(Exception):
    """The file cannot become a training image; ``str(err)`` is the reason."""


def target_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) after rescaling the shorter side to ``size`` (torchvision's ``Resize(size)`` rounding)."""
    if width <= height:
        return size, max(size, int(size * height / width))
    return max(size, int(size * width / height)), size


def resize_center_crop(arr: np.ndarray, original: tuple[int, int], size: int) -> np.ndarray:
    """Rescale (H, W, C) uint8 ``arr`` so the shorter side is ``size``, crop the central square.

    ``original`` is the (w, h) of the full-resolution image ``arr`` was decoded from
    (it may be a reduced-scale DCT decode); the target size is computed from it, so
    the result does not depend on the decode scale.  The filter is antialiased
    bilinear (PIL ``BILINEAR`` / torchvision ``Resize(antialias=True)``); the crop
    offset is ``round((W - size) / 2)`` as in torchvision's ``CenterCrop``.
    Greyscale (C = 1) input is returned as RGB.
    """
    import torch

    tw, th = target_size(original[0], original[1], size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # read-only numpy input is fine: interpolate does not write it
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0)
        if x.shape[2:] != (th, tw):
            x = torch.nn.functional.interpolate(x, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
    top, left = int(round((th - size) / 2.0)), int(round((tw - size) / 2.0))
    out = x[0, :, top : top + size, left : left + size].permute(1, 2, 0).numpy()
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def _to_l_or_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    mode = im.mode
    if mode in ("RGB", "L"):
        return im
    if mode == "CMYK":
        notes.append("CMYK image converted to RGB")
        return im.convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64) / 257.0
        notes.append(f"{mode} (16-bit) image scaled to 8 bit")
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if mode == "1":
        return im.convert("L")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def load_image(path: str | os.PathLike[str], size: int) -> tuple[np.ndarray, list[str]]:
    """Decode ``path`` into a uint8 (size, size, 3) RGB patch; return it with notes.

    Notes are short sentences about images that were used but are unusual
    (upscaled, CMYK, 16-bit, content not matching the file name).  Raises
    :class:`ImageRejected` with the reason for files that cannot be used.
    """
    path = Path(path)
    notes: list[str] = []
    try:
        if path.stat().st_size == 0:
            raise ImageRejected("empty file (0 bytes)")
        fh = open(path, "rb")
    except PermissionError as err:
        raise ImageRejected(f"permission denied: {err.strerror}") from err
    except OSError as err:
        raise ImageRejected(f"cannot read file: {err.strerror or err}") from err
    with fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(fh)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageRejected(f"decompression-bomb guard: {err} (raise the limit with --max-image-pixels)") from err
        except UnidentifiedImageError as err:
            raise ImageRejected("not an image file (format not recognised)") from err
        except Exception as err:  # noqa: BLE001 - any decoder failure rejects the file
            raise ImageRejected(f"truncated or corrupt image header: {type(err).__name__}: {err}") from err
        with im:
            try:
                w, h = im.size
                limit = Image.MAX_IMAGE_PIXELS
                if limit is not None and w * h > limit:
                    raise ImageRejected(
                        f"decompression-bomb guard: {w}x{h} = {w * h} pixels exceeds the limit of {limit} "
                        f"(raise it with --max-image-pixels)"
                    )
                if path.suffix.lower() in JPEG_SUFFIXES and im.format != "JPEG":
                    notes.append(f"{im.format} content in a {path.suffix} file (decoded by content)")
                if im.format == "JPEG":
                    # Reduced-scale DCT decode; keeps shorter side >= size (draft rounds scale down).
                    im.draft("RGB", (size, size))
                im.load()
                try:
                    orientation = im.getexif().get(0x0112, 1)
                except Exception:  # noqa: BLE001
                    orientation = 1
                try:
                    ImageOps.exif_transpose(im, in_place=True)
                except Exception:  # noqa: BLE001 - a broken EXIF block must not reject the image
                    notes.append("unreadable EXIF orientation ignored")
                im2 = _to_l_or_rgb(im, notes)
                arr = np.asarray(im2)
            except ImageRejected:
                raise
            except MemoryError as err:
                raise ImageRejected("image too large to decode in memory") from err
            except Exception as err:  # noqa: BLE001 - truncated / corrupt data
                raise ImageRejected(f"truncated or corrupt image data: {type(err).__name__}: {err}") from err
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if orientation in (5, 6, 7, 8):  # exif_transpose swapped the axes
        w, h = h, w
    if min(w, h) < size:
        notes.append(f"upscaled: {w}x{h} is smaller than {size} on its shorter side")
    out = resize_center_crop(arr, (w, h), size)
    return out, notes


def reference_image(path: str | os.PathLike[str], size: int, resample: int = Image.BILINEAR) -> np.ndarray:
    """The slow, obvious pipeline: full decode, EXIF, RGB, rescale shorter side, central crop.

    Same rounding as :func:`resize_center_crop` (torchvision's ``Resize`` +
    ``CenterCrop``), all in PIL at full resolution.  Used by the tests and the benchmark.
    """
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        tw, th = target_size(im.width, im.height, size)
        im = im.resize((tw, th), resample)
        left, top = int(round((tw - size) / 2.0)), int(round((th - size) / 2.0))
        return np.asarray(im.crop((left, top, left + size, top + size)))


def plain_pipeline(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """What a user would write: open, convert('RGB'), resize (PIL default filter), crop."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        tw, th = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((tw, th))
        left, top = (tw - size) // 2, (th - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)))
